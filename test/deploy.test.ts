/**
 * The service kit, checked for real as far as this machine allows: the Dockerfile (parsed; its
 * HEALTHCHECK command run against a real server; its runtime stage's install and start run in a
 * temp folder), the systemd unit (`systemd-analyze verify` and `security`), and the nginx and
 * Caddy configs run in front of a real `starsock serve` with peers of every kind joining through them.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, request as httpRequest, type ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { io } from 'socket.io-client'
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { SERVER_OPTIONS } from '../server/options.ts'
import { echo, readAll } from './helpers/connections.ts'
import { expectBytes } from './helpers/bytes.ts'
import { Programs } from './helpers/programs.ts'
import { request } from './helpers/raw-peer.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NGINX = '/usr/sbin/nginx'
const CADDY = '/usr/bin/caddy'
const HAPROXY = '/usr/sbin/haproxy'
const LEGACY_PAIR = fileURLToPath(new URL('./fixtures/deploy/legacy-pair.ts', import.meta.url))

/**
 * What a test needs and the suite provides (scripts/ensure-system-deps.sh installs the tools; CI
 * runs as root): missing here, the test is reported as skipped with `what`; missing in CI, it fails.
 */
function need (ctx: TestContext, have: boolean, what: string): void {
  if (have) return
  if (process.env.CI !== undefined) throw new Error(`${what}: CI must have it (scripts/ensure-system-deps.sh installs the tools; .ci/run runs as root)`)
  ctx.skip(what)
}

/** `need` for a program at `path`. */
function tool (ctx: TestContext, path: string): void {
  need(ctx, existsSync(path), `${path} is missing`)
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/** One Dockerfile instruction: its keyword and the rest of its (joined) line. */
interface Instruction { keyword: string, args: string }
/** One build stage: its base image, name and instructions. */
interface Stage { from: string, name: string | undefined, instructions: Instruction[] }

/** Parse a Dockerfile into stages (comments dropped, `\` continuations joined). */
function parseDockerfile (text: string): Stage[] {
  const logical: string[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (pending === '' && (line === '' || line.startsWith('#'))) continue
    if (line.startsWith('#')) continue // a comment inside a continued instruction
    if (line.endsWith('\\')) { pending += line.slice(0, -1) + ' '; continue }
    logical.push(pending + line)
    pending = ''
  }
  const stages: Stage[] = []
  for (const line of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line)
    if (m === null) throw new Error(`not an instruction: ${line}`)
    const keyword = (m[1] ?? '').toUpperCase()
    const args = (m[2] ?? '').trim()
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      if (from === null) throw new Error(`bad FROM: ${args}`)
      stages.push({ from: from[1] ?? '', name: from[2], instructions: [] })
    } else {
      const stage = stages.at(-1)
      if (stage === undefined) throw new Error(`${keyword} before FROM`)
      stage.instructions.push({ keyword, args })
    }
  }
  return stages
}

/** The arguments of the stage's only `keyword` instruction. */
function only (stage: Stage, keyword: string): string {
  const found = stage.instructions.filter((i) => i.keyword === keyword)
  if (found.length !== 1) throw new Error(`expected one ${keyword} in stage ${stage.name ?? stage.from}, got ${found.length}`)
  return found[0]?.args ?? ''
}

/** `ENV a=b c=d` lines of a stage as an object. */
function envOf (stage: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const i of stage.instructions.filter((i) => i.keyword === 'ENV')) {
    for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '')
  }
  return env
}

/** The exec-form command of `HEALTHCHECK [--options] CMD [...]`, and its options. */
function healthcheckOf (stage: Stage): { options: Record<string, string>, command: string[] } {
  const m = /^((?:--\S+\s+)*)CMD\s+(\[[\s\S]*\])$/.exec(only(stage, 'HEALTHCHECK'))
  if (m === null) throw new Error('HEALTHCHECK must be `HEALTHCHECK [--options] CMD ["exec", "form"]`')
  const options = Object.fromEntries((m[1] ?? '').trim().split(/\s+/).filter((o) => o !== '').map((o) => o.slice(2).split('=') as [string, string]))
  return { options, command: JSON.parse(m[2] ?? '') as string[] }
}

/**
 * Run the healthcheck's command here (`node` is this node) with `env`, without blocking this
 * process (a test server here must answer it); settles with its exit code, `null` if it had to be
 * killed after 10 s (Docker's --timeout would have).
 */
async function runHealthcheck (command: string[], env: Record<string, string>): Promise<number | null> {
  const [bin, ...args] = command
  const child = spawn(bin === 'node' ? process.execPath : bin ?? '', args, { env: { ...process.env, ...env }, stdio: 'ignore', timeout: 10_000 })
  return await new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => resolve(code))
  })
}

describe('Dockerfile', () => {
  const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
  const runtime = stages.at(-1) as Stage
  /** The build stage's RUN that makes /app, the runtime's files. */
  const appRun = (): string => {
    const found = (stages[0] as Stage).instructions.filter((i) => i.keyword === 'RUN' && i.args.startsWith('mkdir /app '))
    if (found.length !== 1) throw new Error(`expected one RUN starting with \`mkdir /app\` in the build stage, got ${found.length}`)
    return found[0]?.args ?? ''
  }
  const programs = new Programs()
  const dirs: string[] = []
  const tmp = (prefix: string): string => { const d = mkdtempSync(join(tmpdir(), prefix)); dirs.push(d); return d }
  afterEach(async () => { await programs.cleanup() })
  afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

  it('builds in one stage and runs the packed package with its locked production dependencies in another, as a numeric non-root user, with a health check, SIGTERM and the serve command', () => {
    expect(stages.map((s) => [s.from, s.name])).toEqual([['node:20-bookworm-slim', 'build'], ['node:20-bookworm-slim', 'runtime']])
    const build = stages[0] as Stage
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join(' && ')
    for (const step of ['npm ci', 'npm run build', 'npm pack']) expect(runs).toContain(step)
    // The tarball unpacked with the lock beside it (a tarball never carries it), production dependencies only.
    expect(appRun()).toMatch(/tar -xzf \/pkg\/starsock-\*\.tgz -C \/app .*cp package-lock\.json \/app\/ .*npm ci --omit=dev /)
    // The runtime stage takes only that folder from the build stage, and puts starsock on the PATH.
    expect(runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args)).toEqual(['--from=build /app /app'])
    expect(only(runtime, 'RUN')).toMatch(/^ln -s \/app\/bin\/starsock\.js \/usr\/local\/bin\/starsock /)
    const user = only(runtime, 'USER')
    expect(user).toMatch(/^\d+(:\d+)?$/)
    expect(Number(user.split(':')[0])).toBeGreaterThan(0)
    expect(only(runtime, 'EXPOSE')).toBe('9090')
    expect(only(runtime, 'STOPSIGNAL')).toBe('SIGTERM')
    expect(JSON.parse(only(runtime, 'ENTRYPOINT'))).toEqual(['starsock'])
    // The host in ENV, not in CMD: `docker run -e HOST=...` must win over it.
    expect(JSON.parse(only(runtime, 'CMD'))).toEqual(['serve'])
    expect(envOf(runtime).HOST).toBe('0.0.0.0')
    // The gateway key on the volume the image declares.
    expect(envOf(runtime).STARSOCK_GATEWAY_KEY).toBe('/var/lib/starsock/gateway-key')
    expect(JSON.parse(only(runtime, 'VOLUME'))).toEqual(['/var/lib/starsock'])
    const { options, command } = healthcheckOf(runtime)
    expect(command[0]).toBe('node') // the slim image has node, not curl
    expect(Number.parseInt(options.timeout ?? '30', 10)).toBeLessThanOrEqual(10)
    // What .dockerignore keeps out of the build context.
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim())
    for (const entry of ['node_modules', 'dist', 'test-artifacts', '.git', 'test', 'bench']) expect(ignored).toContain(entry)
  })

  it('its HEALTHCHECK command, run as written, exits 0 against a running starsock serve and non-zero once it stopped', async () => {
    const { command } = healthcheckOf(runtime)
    const { program, port } = await programs.serve()
    expect(await runHealthcheck(command, { PORT: String(port) })).toBe(0)
    // A port where nothing answers /healthz with 200 (the page's 404 would be a wrong answer too).
    expect(await program.stop('SIGTERM')).toBe(0)
    expect(await runHealthcheck(command, { PORT: String(port) })).not.toBe(0)
  })

  it('its HEALTHCHECK command exits non-zero, by itself, for a 503 and for a server that never answers', async () => {
    const { command } = healthcheckOf(runtime)
    const held: ServerResponse[] = []
    let answer503 = true
    const server = createHttpServer((req, res) => {
      if (req.url === '/healthz' && answer503) res.writeHead(503).end('shutting down\n')
      else held.push(res) // never answered
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    try {
      expect(await runHealthcheck(command, { PORT: String(port) })).toBe(1)
      answer503 = false
      // Its own timeout ends it (exit 1); null would mean this test's 10 s kill did.
      expect(await runHealthcheck(command, { PORT: String(port) })).toBe(1)
    } finally {
      for (const res of held) res.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('its HEALTHCHECK command asks /PREFIX/healthz when STARSOCK_PATH is /PREFIX/socket.io', async () => {
    const { command } = healthcheckOf(runtime)
    const program = programs.start(['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', '--path', '/relay/socket.io'])
    await waitFor('the URL line from starsock serve --path', () => /^starsock http:\/\/127\.0\.0\.1:\d+\/relay\/ /m.test(program.out()) || program.proc.exitCode !== null, 20_000)
    const port = Number(/^starsock http:\/\/127\.0\.0\.1:(\d+)\/relay\/ /m.exec(program.out())?.[1])
    expect(port, program.out() + program.err()).toBeGreaterThan(0)
    expect(await runHealthcheck(command, { PORT: String(port), STARSOCK_PATH: '/relay/socket.io' })).toBe(0)
    expect(await runHealthcheck(command, { PORT: String(port), STARSOCK_PATH: '/relay/socket.io/' })).toBe(0)
    // Without the variable it asks /healthz, which this server does not serve.
    expect(await runHealthcheck(command, { PORT: String(port) })).toBe(1)
  })

  it('its build stage unpacks the tarball with the locked production dependencies (offline: the lock\'s versions, from the cache), and the runtime\'s starsock, ENTRYPOINT + CMD and ENV (HOST overridden as docker run -e does) serve the page and /healthz', async (ctx) => {
    const dir = tmp('starsock-docker-')
    const pkgDir = join(dir, 'pkg')
    const appDir = join(dir, 'app')
    const binDir = join(dir, 'bin')
    mkdirSync(binDir)
    // The build stage's pack (the global setup built dist/ from these sources).
    mkdirSync(pkgDir)
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', pkgDir], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
    expect(pack.status, pack.stderr).toBe(0)
    // The build stage's /app step as written, in temp folders, from the sources (the stage's WORKDIR).
    const onHere = (command: string): string => command.replaceAll('/pkg/', pkgDir + '/').replace(/(^|\s)\/app(?=[\s/]|$)/g, `$1${appDir}`).replace(/(^|\s)\/usr\/local\/bin\//g, `$1${binDir}/`)
    const assemble = onHere(appRun())
    // Offline, as the README's test: only the lock's versions, from npm's cache (the suite's own install filled it).
    const r = spawnSync('sh', ['-c', assemble], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false' } })
    need(ctx, r.status === 0 || !/ENOTCACHED/.test(r.stderr), 'the lock\'s production packages in npm\'s cache (npm ci fills it)')
    expect(r.status, `${assemble}\n${r.stderr}`).toBe(0)
    const deps = readdirSync(join(appDir, 'node_modules'))
    expect(deps).toContain('socket.io')
    for (const dev of ['typescript', 'vitest', 'vite', 'tsx', 'playwright-core']) expect(deps).not.toContain(dev)
    // Every installed package at the lock's version.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> }
    const names = deps.flatMap((d) => d.startsWith('@') ? readdirSync(join(appDir, 'node_modules', d)).map((n) => `${d}/${n}`) : d.startsWith('.') ? [] : [d])
    expect(names.length).toBeGreaterThan(10)
    for (const name of names) {
      const installed = (JSON.parse(readFileSync(join(appDir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
      expect([name, installed]).toEqual([name, lock.packages[`node_modules/${name}`]?.version])
    }
    // With install scripts off, bufferutil still loads its prebuilt binary (linux-x64 has one).
    if (process.platform === 'linux' && process.arch === 'x64') {
      const load = spawnSync(process.execPath, ['-e', "require('bufferutil').mask"], { cwd: appDir, encoding: 'utf8' })
      expect(load.status, load.stderr).toBe(0)
    }
    // The runtime stage's link onto the PATH, as written.
    const link = only(runtime, 'RUN').split('&&').map((c) => c.trim()).filter((c) => c.startsWith('ln '))
    expect(link).toHaveLength(1)
    const linked = spawnSync('sh', ['-c', onHere(link[0] ?? '')], { encoding: 'utf8' })
    expect(linked.status, linked.stderr).toBe(0)
    // ENTRYPOINT + CMD on the image's ENV, with HOST set as `docker run -e HOST=127.0.0.1` would, the port any free one.
    const entry = JSON.parse(only(runtime, 'ENTRYPOINT')) as string[]
    const cmd = JSON.parse(only(runtime, 'CMD')) as string[]
    const home = tmp('starsock-docker-home-')
    const proc = spawn(entry[0] ?? '', [...entry.slice(1), ...cmd], {
      cwd: home,
      env: { ...process.env, PATH: `${binDir}:${process.env.PATH ?? ''}`, ...envOf(runtime), HOST: '127.0.0.1', STARSOCK_GATEWAY_KEY: join(home, 'gateway-key'), PORT: '0', HOME: home },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    try {
      let out = ''
      let err = ''
      proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
      proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
      await waitFor('the URL line from the unpacked starsock serve', () => /^starsock http:\/\/\S+ /m.test(out) || proc.exitCode !== null, 20_000)
        .catch((e: unknown) => { throw new Error(`${e instanceof Error ? e.message : String(e)} (stdout: ${out} stderr: ${err})`) })
      expect(out, err).toMatch(/^starsock http:\/\/127\.0\.0\.1:\d+ /m)
      const port = Number(/^starsock http:\/\/127\.0\.0\.1:(\d+) /m.exec(out)?.[1])
      expect(await runHealthcheck(healthcheckOf(runtime).command, { PORT: String(port) })).toBe(0)
      const page = await fetch(`http://127.0.0.1:${port}/`)
      expect(page.status).toBe(200)
      expect(await page.text()).toMatch(/<script[^>]+src="[^"]+\.js"/)
    } finally {
      proc.kill('SIGTERM')
      const code = await within('the unpacked starsock serve to exit after SIGTERM', new Promise<number | null>((resolve) => {
        if (proc.exitCode !== null) resolve(proc.exitCode)
        else proc.once('exit', (c) => resolve(c))
      }), 15_000).catch(() => { proc.kill('SIGKILL'); return -1 })
      expect(code).toBe(0)
    }
  }, 180_000)
})

// ---------------------------------------------------------------------------------------------
// systemd

/** `key=value` settings of a unit file (every value of a key, in order). */
function unitSettings (text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue
    const at = line.indexOf('=')
    const key = line.slice(0, at)
    settings.set(key, [...(settings.get(key) ?? []), line.slice(at + 1)])
  }
  return settings
}

describe('systemd unit', () => {
  const text = readFileSync(join(ROOT, 'deploy', 'starsock.service'), 'utf8')
  // Made before the tests run (not at collection, whose folder a filtered run would never remove).
  let dir = ''
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-unit-')) })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  /**
   * A root folder for `systemd-analyze --root` with `unit` as /etc/systemd/system/starsock.service,
   * this system's own units, and (with `program`) an executable /usr/local/bin/starsock, where
   * Debian's npm installs it: verify resolves the unit's bare ExecStart name inside the root, so the
   * shipped line is checked as written. Settles with the root and the unit's path in it.
   */
  const rootWith = (name: string, unit: string, program = true): { root: string, unit: string } => {
    const root = join(dir, name)
    mkdirSync(join(root, 'etc', 'systemd', 'system'), { recursive: true })
    mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true })
    mkdirSync(join(root, 'usr', 'lib', 'systemd'), { recursive: true })
    cpSync('/usr/lib/systemd/system', join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true })
    if (program) writeFileSync(join(root, 'usr', 'local', 'bin', 'starsock'), '#!/bin/sh\n', { mode: 0o755 })
    writeFileSync(join(root, 'etc', 'systemd', 'system', 'starsock.service'), unit)
    return { root, unit: '/etc/systemd/system/starsock.service' }
  }
  /** `systemd-analyze verify` of `unit` inside `root`. */
  const verify = (at: { root: string, unit: string }): { status: number | null, out: string } => {
    const r = spawnSync('systemd-analyze', ['verify', `--root=${at.root}`, at.unit], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
    return { status: r.status, out: (r.stderr + r.stdout).trim() }
  }

  it('is hardened as docs/deploy.md says, with a stop timeout above the shutdown grace', () => {
    const s = unitSettings(text)
    const one = (key: string): string | undefined => s.get(key)?.at(-1)
    // A bare name systemd finds where npm install -g puts it (/usr/local/bin with Debian's npm, or /usr/bin).
    expect(one('ExecStart')).toBe('starsock serve')
    for (const [key, value] of Object.entries({
      DynamicUser: 'yes', StateDirectory: 'starsock', ProtectSystem: 'strict', ProtectHome: 'yes', PrivateTmp: 'yes',
      PrivateDevices: 'yes', NoNewPrivileges: 'yes', CapabilityBoundingSet: '', AmbientCapabilities: '', LockPersonality: 'yes',
      ProtectKernelTunables: 'yes', ProtectKernelModules: 'yes', ProtectKernelLogs: 'yes', ProtectControlGroups: 'yes',
      RestrictNamespaces: 'yes', RestrictRealtime: 'yes', Restart: 'on-failure', KillSignal: 'SIGTERM'
    })) expect([key, one(key)]).toEqual([key, value])
    expect(one('RestrictAddressFamilies')?.split(' ')).toEqual(expect.arrayContaining(['AF_INET', 'AF_INET6', 'AF_UNIX']))
    expect(s.get('SystemCallFilter')?.[0]).toBe('@system-service')
    // V8's JIT needs W+X memory: node aborts under MemoryDenyWriteExecute=yes.
    expect(s.has('MemoryDenyWriteExecute')).toBe(false)
    expect(Number(one('LimitNOFILE'))).toBeGreaterThanOrEqual(65_536)
    const stopMs = Number.parseInt(one('TimeoutStopSec') ?? '0', 10) * 1000
    expect(stopMs).toBeGreaterThan(SERVER_OPTIONS.shutdownGraceMs.default as number)
    const env = Object.fromEntries((s.get('Environment') ?? []).map((e) => e.split('=') as [string, string]))
    expect(env).toMatchObject({ HOST: '127.0.0.1', STARSOCK_TRUST_PROXY: '1', STARSOCK_GATEWAY_KEY: '/var/lib/starsock/gateway-key' })
  })

  it('leaves out MemoryDenyWriteExecute because node cannot run under it (shown with the kernel\'s prctl(PR_SET_MDWE), when python3 and Linux 6.3+ are here)', (ctx) => {
    expect(unitSettings(text).has('MemoryDenyWriteExecute')).toBe(false)
    // PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN (1): what systemd applies for the setting on
    // kernels that have it; inherited across exec. If node ever runs under it, turn it on.
    const script = 'import ctypes, os, sys\n' +
      'libc = ctypes.CDLL(None, use_errno=True)\n' +
      'if libc.prctl(65, 1, 0, 0, 0) != 0: sys.exit(77)\n' +
      'os.execv(sys.argv[1], [sys.argv[1], "-e", "console.log(\'ran\')"])\n'
    const r = spawnSync('python3', ['-c', script, process.execPath], { cwd: dir, encoding: 'utf8', timeout: 20_000 }) // a core file, if any, lands in temp
    if (r.error !== undefined || r.status === 77) ctx.skip('no python3, or a kernel without PR_SET_MDWE') // a kernel matter: skipped in CI too
    expect(r.stdout).not.toContain('ran')
    expect(r.status).not.toBe(0)
  })

  it('starts as the unit starts it, as far as this machine can: its ExecStart and Environment=, an unprivileged user with no capabilities and no new privileges (setpriv), the gateway key in the state directory; SIGTERM ends it with 0', async (ctx) => {
    // Changing user needs root; the rest of the sandbox (mounts, seccomp) needs systemd itself.
    need(ctx, process.getuid?.() === 0, 'running as root (setpriv changes the user)')
    tool(ctx, '/usr/bin/setpriv')
    const s = unitSettings(text)
    const state = join(dir, 'state')
    chmodSync(dir, 0o711) // mkdtemp's 0700 would keep the other user out of its state folder inside
    mkdirSync(state, { mode: 0o700 })
    chownSync(state, 65534, 65534) // what StateDirectory= does for the dynamic user
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' }
    for (const e of s.get('Environment') ?? []) {
      for (const m of e.matchAll(/(\w+)=(\S+)/g)) env[m[1] ?? ''] = m[2] ?? ''
    }
    Object.assign(env, { PORT: '0', STARSOCK_GATEWAY: '1', STARSOCK_GATEWAY_KEY: join(state, 'gateway-key') })
    const [program, ...args] = (s.get('ExecStart')?.at(-1) ?? '').split(' ')
    expect(program).toBe('starsock')
    const proc = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all',
      process.execPath, join(ROOT, 'bin', 'starsock.js'), ...args], { cwd: state, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    try {
      await waitFor('the gateway peer line from starsock serve under setpriv', () => /^gateway peer \S+/m.test(out) || proc.exitCode !== null, 30_000)
        .catch((e: unknown) => { throw new Error(`${e instanceof Error ? e.message : String(e)} (stdout: ${out} stderr: ${err})`) })
      expect(out, err).toMatch(/^starsock http:\/\/127\.0\.0\.1:\d+ /m)
      expect(out).toMatch(/^gateway peer \S+/m)
      const key = statSync(join(state, 'gateway-key'))
      expect([key.uid, key.mode & 0o777]).toEqual([65534, 0o600])
      const port = Number(/^starsock http:\/\/127\.0\.0\.1:(\d+) /m.exec(out)?.[1])
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
    } finally {
      proc.kill('SIGTERM')
    }
    const stopMs = Number.parseInt(s.get('TimeoutStopSec')?.at(-1) ?? '0', 10) * 1000
    expect(await within('starsock serve to exit after SIGTERM, within TimeoutStopSec', exited, stopMs).catch((e: unknown) => { proc.kill('SIGKILL'); throw e })).toBe(0)
  })

  it('passes systemd-analyze verify without a single warning, its ExecStart as written (found in /usr/local/bin), and fails it without the program there', (ctx) => {
    tool(ctx, '/usr/bin/systemd-analyze')
    expect(verify(rootWith('root', text))).toEqual({ status: 0, out: '' })
    // The bare name is really looked up: without the program, verify says so.
    const missing = verify(rootWith('root-without', text, false))
    expect(missing.status).not.toBe(0)
    expect(missing.out).toContain('Command starsock is not executable')
  })

  it('its commented port-443 variant (credentials, capability, no PrivateUsers) passes systemd-analyze verify too', (ctx) => {
    tool(ctx, '/usr/bin/systemd-analyze')
    let variant = replaceExactly(text, '\n#Environment=HOST=0.0.0.0 ', '\nEnvironment=HOST=0.0.0.0 ')
    variant = replaceExactly(variant, '\n#LoadCredential=', '\nLoadCredential=', 2)
    variant = replaceExactly(variant, '\nCapabilityBoundingSet=\nAmbientCapabilities=\n', '\n')
    variant = replaceExactly(variant, '\n#CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n#AmbientCapabilities=CAP_NET_BIND_SERVICE\n', '\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n')
    variant = replaceExactly(variant, '\nPrivateUsers=yes\n', '\n')
    const env = Object.fromEntries((unitSettings(variant).get('Environment') ?? []).flatMap((e) => [...e.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]])))
    expect(env).toMatchObject({ HOST: '0.0.0.0', PORT: '443', STARSOCK_TRUST_PROXY: '0', KEY: '%d/key.pem', CERT: '%d/cert.pem' })
    expect(verify(rootWith('root-443', variant))).toEqual({ status: 0, out: '' })
  })

  it('scores as exposed at most 2.0 (of 10) in systemd-analyze security --offline', (ctx) => {
    tool(ctx, '/usr/bin/systemd-analyze')
    const at = rootWith('root-security', text)
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', `--root=${at.root}`, at.unit], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
    expect(r.status, r.stderr).toBe(0)
    const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1])
    expect(score).toBeLessThanOrEqual(2)
  })
})

// ---------------------------------------------------------------------------------------------
// Reverse proxies

/** The text of `file`, or '' when it is not there. */
function readFileIfAny (file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : ''
}

/** A TCP port free right now on 127.0.0.1 (for programs that cannot take port 0). */
async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createTcpServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

/** `text` with `from` replaced by `to`, failing unless `from` occurs exactly `times` times. */
function replaceExactly (text: string, from: string, to: string, times = 1): string {
  const parts = text.split(from)
  if (parts.length - 1 !== times) throw new Error(`expected ${times} of ${JSON.stringify(from)} in the shipped config, found ${parts.length - 1}`)
  return parts.join(to)
}

/** GET `url` (https with `ca`), not following redirects; settles with status, location and body. */
async function get (url: string, ca?: Buffer): Promise<{ status: number, location: string | undefined, body: string }> {
  return await within(`GET ${url}`, new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { ca }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }))
    })
    req.on('error', reject)
    req.end()
  }), 10_000)
}

/** A certificate for 127.0.0.1 and localhost made by openssl in `dir`. */
function makeCert (dir: string): { cert: string, key: string, pem: Buffer } {
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`)
  return { cert, key, pem: readFileSync(cert) }
}

/** Wait until `url`/healthz answers `ok` through the proxy (`log()` says why not, at the deadline). */
async function untilHealthy (url: string, ca: Buffer, what: string, log: () => string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  let last = ''
  while (Date.now() < deadline) {
    try {
      const r = await get(`${url}/healthz`, ca)
      if (r.body === 'ok\n') return
      last = `${r.status} ${r.body}`
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${what} to answer /healthz on ${url} within ${ms} ms (last: ${last}; log: ${log().slice(-3000)})`)
}

/** Stop a proxy process by its pid (SIGTERM, then SIGKILL), and wait for it to exit. */
async function stopProcess (proc: ChildProcess | undefined, what: string): Promise<void> {
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  await within(`${what} to exit`, exited, 10_000).catch(async () => { proc.kill('SIGKILL'); await exited })
}

/** The peers the test makes through a proxy, closed after each test. */
const throughProxy: StarsockPeer[] = []
afterEach(async () => { for (const p of throughProxy.splice(0)) await p.close() })

/**
 * Through the proxy at `url` (TLS, trusting `ca`) to a `starsock serve --trust-proxy
 * --max-peers-per-ip 2` at `direct`: two websocket-only peers join and one dials the other; a
 * third peer is refused by the per-IP limit although each claims its own X-Forwarded-For (the
 * proxy's appended entry counts, not the client's words); a polling-only peer joins and dials;
 * two legacy libp2p-websocket-star peers join over wss and dial each other.
 */
async function joinAndDialThrough (url: string, cert: { cert: string, pem: Buffer }, direct: string): Promise<void> {
  const ca = cert.pem
  const peer = async (transports: Array<'websocket' | 'polling'>, claimedIp: string): Promise<StarsockPeer> => {
    const p = await createPeer({ server: url, transports, socketOptions: { ca, extraHeaders: { 'X-Forwarded-For': claimedIp } } })
    throughProxy.push(p)
    return p
  }
  const peersJoined = async (n: number): Promise<void> => {
    let last = -1
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      last = ((await (await fetch(`${direct}/status.json`)).json()) as { peers: number }).peers
      if (last === n) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`${n} peers joined (last seen ${last}) within 10000 ms`)
  }
  const exchange = async (from: StarsockPeer, to: StarsockPeer, size: number, seed: number, what: string): Promise<void> => {
    const conn = await within(`${what}: dial`, from.dial(to.peerId), 15_000)
    const data = testBytes(size, seed)
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    expectBytes(await within(`${what}: echo`, back, 20_000), data, what)
  }

  const a = await peer(['websocket'], '203.0.113.1')
  const b = await peer(['websocket'], '203.0.113.2')
  b.handle(echo)
  await exchange(a, b, 300_000, 1, 'websocket A -> B')
  await expect(peer(['polling'], '203.0.113.3')).rejects.toMatchObject({ code: 'E_LIMIT_PEERS_PER_IP' })
  await a.close()
  await peersJoined(1)
  const c = await peer(['polling'], '203.0.113.4')
  await exchange(c, b, 300_000, 2, 'polling C -> B')
  for (const p of throughProxy.splice(0)) await p.close()
  await peersJoined(0)

  const port = new URL(url).port
  const child = spawn(process.execPath, ['--conditions=starsock-source', '--import', 'tsx', LEGACY_PAIR, port], {
    cwd: ROOT,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: cert.cert },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await within('the legacy pair to join and echo over wss', new Promise<number | null>((resolve) => child.once('exit', resolve)), 60_000)
    .catch(async (e: unknown) => {
      await stopProcess(child, 'the legacy pair')
      throw new Error(`${e instanceof Error ? e.message : String(e)} (stdout: ${out} stderr: ${err})`)
    })
  expect([code, out.trim()], err).toEqual([0, expect.stringContaining('"echoed":100000')])
  expect(out).toContain(`/tcp/${port}/wss/p2p-websocket-star/`)
}

describe('nginx in front of starsock serve (deploy/nginx.conf)', () => {
  let dir = ''
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-nginx-')) })
  const programs = new Programs()
  let nginx: ChildProcess | undefined
  afterAll(async () => {
    await stopProcess(nginx, 'nginx')
    await programs.cleanup()
    rmSync(dir, { recursive: true, force: true })
  })

  /** nginx's main config around the shipped server blocks (which go inside `http`). */
  const mainConfig = (serverBlocks: string): string => {
    const conf = join(dir, `starsock-${Math.random().toString(36).slice(2)}.conf`)
    writeFileSync(conf, serverBlocks)
    // As root, workers would switch to `nobody`, who cannot use this private temp folder.
    const user = process.getuid?.() === 0 ? 'user root root;\n' : ''
    const main = join(dir, 'nginx.conf')
    writeFileSync(main, `${user}worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
    access_log ${join(dir, 'access.log')};
    client_body_temp_path ${join(dir, 'body')};
    proxy_temp_path ${join(dir, 'proxy')};
    fastcgi_temp_path ${join(dir, 'fastcgi')};
    uwsgi_temp_path ${join(dir, 'uwsgi')};
    scgi_temp_path ${join(dir, 'scgi')};
    include ${conf};
}
`)
    return main
  }
  const shipped = readFileSync(join(ROOT, 'deploy', 'nginx.conf'), 'utf8')
  const withCert = (text: string, cert: { cert: string, key: string }): string => {
    const t = replaceExactly(text, '/etc/letsencrypt/live/starsock.example.com/fullchain.pem', cert.cert)
    return replaceExactly(t, '/etc/letsencrypt/live/starsock.example.com/privkey.pem', cert.key)
  }

  it('keeps an idle connection longer than engine.io lets one be silent (ping interval + timeout in server/server.ts)', () => {
    const source = readFileSync(join(ROOT, 'server', 'server.ts'), 'utf8')
    const constant = (name: string): number => Number(new RegExp(`const ${name} = ([\\d_]+)`).exec(source)?.[1]?.replaceAll('_', ''))
    const silentMs = constant('PING_INTERVAL_MS') + constant('PING_TIMEOUT_MS')
    expect(silentMs).toBeGreaterThan(0)
    for (const directive of ['proxy_read_timeout', 'proxy_send_timeout']) {
      const seconds = Number(new RegExp(`^\\s*${directive} (\\d+)s;`, 'm').exec(shipped)?.[1])
      expect([directive, seconds * 1000 > silentMs]).toEqual([directive, true])
    }
  })

  it('nginx -t passes on the shipped file as written (its certificate paths replaced)', (ctx) => {
    tool(ctx, NGINX)
    const main = mainConfig(withCert(shipped, makeCert(dir)))
    const r = spawnSync(NGINX, ['-t', '-p', dir, '-e', join(dir, 'error.log'), '-c', main], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stderr).toContain('syntax is ok')
    expect(r.stderr).not.toMatch(/\[(warn|emerg|alert|crit)\]/)
  })

  it('carries websocket and polling peers and the legacy client over TLS, counts clients by the address it appends, and redirects http to https', async (ctx) => {
    tool(ctx, NGINX)
    const cert = makeCert(dir)
    const { url: direct, port } = await programs.serve(0, ['--trust-proxy', '--max-peers-per-ip', '2'])
    const [httpPort, tlsPort] = [await freePort(), await freePort()]
    let conf = withCert(shipped, cert)
    conf = replaceExactly(conf, 'server 127.0.0.1:9090;', `server 127.0.0.1:${port};`)
    conf = replaceExactly(conf, '    listen 80;\n', `    listen 127.0.0.1:${httpPort};\n`)
    conf = replaceExactly(conf, '    listen [::]:80;\n', '')
    conf = replaceExactly(conf, '    listen 443 ssl;\n', `    listen 127.0.0.1:${tlsPort} ssl;\n`)
    conf = replaceExactly(conf, '    listen [::]:443 ssl;\n', '')
    const main = mainConfig(conf)
    let log = ''
    nginx = spawn(NGINX, ['-p', dir, '-e', join(dir, 'error.log'), '-c', main, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] })
    nginx.stderr?.on('data', (d: Buffer) => { log += d.toString() })
    const url = `https://127.0.0.1:${tlsPort}`
    await untilHealthy(url, cert.pem, 'nginx', () => log + readFileIfAny(join(dir, 'error.log')))
    const redirect = await get(`http://127.0.0.1:${httpPort}/?token=x`)
    expect([redirect.status, redirect.location]).toEqual([301, 'https://127.0.0.1/?token=x'])
    await joinAndDialThrough(url, cert, direct)
  }, 120_000)
})

describe('Caddy in front of starsock serve (deploy/Caddyfile)', () => {
  let dir = ''
  // Caddy keeps its state (certificates, locks) under HOME and XDG folders: a private one.
  let env: NodeJS.ProcessEnv = {}
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'starsock-caddy-'))
    env = { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config') }
  })
  const programs = new Programs()
  let caddy: ChildProcess | undefined
  afterAll(async () => {
    await stopProcess(caddy, 'caddy')
    await programs.cleanup()
    rmSync(dir, { recursive: true, force: true })
  })
  const shipped = readFileSync(join(ROOT, 'deploy', 'Caddyfile'), 'utf8')

  it('caddy validate passes on the shipped Caddyfile as written', (ctx) => {
    tool(ctx, CADDY)
    const r = spawnSync(CADDY, ['validate', '--config', join(ROOT, 'deploy', 'Caddyfile'), '--adapter', 'caddyfile'], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout + r.stderr).toContain('Valid configuration')
    // Formatted as caddy fmt writes it (caddy warns at every start otherwise).
    const fmt = spawnSync(CADDY, ['fmt', join(ROOT, 'deploy', 'Caddyfile')], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 })
    expect(fmt.stdout).toBe(shipped)
  })

  it('carries websocket and polling peers and the legacy client over TLS, and counts clients by the address it sets', async (ctx) => {
    tool(ctx, CADDY)
    const cert = makeCert(dir)
    const { url: direct, port } = await programs.serve(0, ['--trust-proxy', '--max-peers-per-ip', '2'])
    const [httpPort, tlsPort] = [await freePort(), await freePort()]
    // Loopback only, no ACME and no admin endpoint: the shipped site with this test's certificate.
    let conf = replaceExactly(shipped, '\n{\n', `\n{\n\tadmin off\n\thttp_port ${httpPort}\n\thttps_port ${tlsPort}\n\tauto_https disable_redirects\n\tstorage file_system ${join(dir, 'storage')}\n`)
    conf = replaceExactly(conf, 'starsock.example.com {\n', `https://127.0.0.1:${tlsPort} {\n\tbind 127.0.0.1\n\ttls ${cert.cert} ${cert.key}\n`)
    conf = replaceExactly(conf, 'reverse_proxy 127.0.0.1:9090', `reverse_proxy 127.0.0.1:${port}`)
    const file = join(dir, 'Caddyfile')
    writeFileSync(file, conf)
    // Loopback only: every address Caddy would listen on is 127.0.0.1's.
    const adapted = spawnSync(CADDY, ['adapt', '--config', file, '--adapter', 'caddyfile'], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 })
    expect(adapted.status, adapted.stderr).toBe(0)
    const servers = (JSON.parse(adapted.stdout) as { apps: { http: { servers: Record<string, { listen: string[] }> } } }).apps.http.servers
    const listen = Object.values(servers).flatMap((server) => server.listen)
    expect(listen.length).toBeGreaterThan(0)
    for (const address of listen) expect(address).toMatch(/^(tcp\/)?127\.0\.0\.1:\d+$/)
    let log = ''
    caddy = spawn(CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    caddy.stderr?.on('data', (d: Buffer) => { log += d.toString() })
    const url = `https://127.0.0.1:${tlsPort}`
    await untilHealthy(url, cert.pem, 'caddy', () => log)
    await joinAndDialThrough(url, cert, direct)
  }, 120_000)
})

describe('HAProxy in front of several nodes (deploy/haproxy.cfg)', () => {
  const shipped = readFileSync(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8')
  let dir = ''
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'starsock-haproxy-check-')) })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  /** `haproxy -c -f` of `text`; settles with its status and everything it printed. */
  const check = (text: string): { status: number | null, out: string } => {
    const file = join(dir, `haproxy-${Math.random().toString(36).slice(2)}.cfg`)
    writeFileSync(file, text)
    const r = spawnSync(HAPROXY, ['-c', '-f', file], { cwd: dir, encoding: 'utf8', timeout: 20_000 })
    return { status: r.status, out: (r.stdout + r.stderr).trim() }
  }

  it('haproxy -c passes on the shipped file as written, without a warning', (ctx) => {
    tool(ctx, HAPROXY)
    expect(check(shipped)).toEqual({ status: 0, out: 'Configuration file is valid' })
    // The check is real: a broken line fails it.
    expect(check(shipped.replace('    balance roundrobin\n', '    balance nosuchalgorithm\n')).status).not.toBe(0)
  })

  it('its commented TLS bind (a certificate and key in one PEM) passes haproxy -c too', (ctx) => {
    tool(ctx, HAPROXY)
    const cert = makeCert(dir)
    const pem = join(dir, 'starsock.pem')
    writeFileSync(pem, Buffer.concat([readFileSync(cert.cert), readFileSync(cert.key)]))
    let variant = replaceExactly(shipped, '\n    bind :80\n', '\n')
    variant = replaceExactly(variant, '\n    #bind :443 ssl crt /etc/haproxy/certs/starsock.pem ', `\n    bind :443 ssl crt ${pem} `)
    expect(check(variant)).toEqual({ status: 0, out: 'Configuration file is valid' })
  })

  it('sticks on the cookie the nodes set and on the sid parameter, checks /readyz, appends X-Forwarded-For, and outlasts engine.io\'s silences', () => {
    const source = readFileSync(join(ROOT, 'server', 'server.ts'), 'utf8')
    const constant = (name: string): number => Number(new RegExp(`const ${name} = ([\\d_]+)`).exec(source)?.[1]?.replaceAll('_', ''))
    const silentMs = constant('PING_INTERVAL_MS') + constant('PING_TIMEOUT_MS')
    expect(silentMs).toBeGreaterThan(0)
    const lines = shipped.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    const seconds = (directive: string): number => {
      const found = lines.filter((l) => l.startsWith(`${directive} `))
      expect([directive, found.length]).toEqual([directive, 1])
      const m = /^(\d+)(s|m|h)$/.exec(found[0]?.slice(directive.length + 1) ?? '')
      return Number(m?.[1]) * ({ s: 1, m: 60, h: 3600 }[m?.[2] as 's' | 'm' | 'h'] ?? NaN)
    }
    for (const directive of ['timeout client', 'timeout server', 'timeout tunnel']) expect([directive, seconds(directive) * 1000 > silentMs]).toEqual([directive, true])
    // The cookie the table learns from is the one the file tells the nodes to set, and the one it matches.
    const cookie = /--sticky-cookie (\S+)/.exec(shipped)?.[1]
    expect(cookie).toMatch(/^\w+$/)
    expect(lines).toEqual(expect.arrayContaining([
      `stick store-response res.cook(${cookie})`,
      'stick match url_param(sid)',
      `stick match req.cook(${cookie}) if !{ url_param(sid) -m found }`,
      'option httpchk GET /readyz',
      'http-check expect status 200',
      'option forwardfor'
    ]))
    // The session id engine.io makes (20 characters) fits the table's key.
    expect(Number(/stick-table type string len (\d+) /.exec(shipped)?.[1])).toBeGreaterThanOrEqual(20)
    expect(lines.filter((l) => /^server node\d+ \S+:\d+$/.test(l)).length).toBeGreaterThanOrEqual(2)
  })
})

// ---------------------------------------------------------------------------------------------
// On/off environment variables (the unit and the image set them)

describe('on/off environment variables of starsock serve', () => {
  const BIN = join(ROOT, 'bin', 'starsock.js')
  const started: ChildProcess[] = []
  const peers: StarsockPeer[] = []
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    for (const proc of started.splice(0)) await stopProcess(proc, 'starsock serve')
  })
  /** The environment without any of the switches (the test runner's own must not leak in). */
  const clean = (): NodeJS.ProcessEnv => {
    const env = { ...process.env }
    for (const name of ['STARSOCK_TRUST_PROXY', 'STARSOCK_UDP_RELAY', 'STARSOCK_GATEWAY', 'DISABLE_METRICS', 'DISABLE_CRYPTO_CHALLENGE', 'DISABLE_STRICT_MULTIADDR']) delete env[name]
    return env
  }
  /** `starsock serve` on loopback with `env` added; settles with its URL, or its exit code and stderr. */
  const serve = async (env: Record<string, string>, extra: string[] = []): Promise<{ url?: string, code?: number | null, err: string, out: string }> => {
    const proc = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', ...extra], { env: { ...clean(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    started.push(proc)
    let out = ''
    let err = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
    await waitFor('starsock serve to print its URL or exit', () => /^starsock http:\/\/127\.0\.0\.1:\d+ /m.test(out) || proc.exitCode !== null, 20_000)
      .catch((e: unknown) => { throw new Error(`${e instanceof Error ? e.message : String(e)} (stdout: ${out} stderr: ${err})`) })
    const url = /^starsock (http:\/\/127\.0\.0\.1:\d+) /m.exec(out)?.[1]
    if (url !== undefined) return { url, err, out }
    return { code: proc.exitCode, err, out }
  }
  const peer = async (url: string, claimedIp: string): Promise<StarsockPeer> => {
    const p = await createPeer({ server: url, transports: ['websocket'], socketOptions: { extraHeaders: { 'X-Forwarded-For': claimedIp } } })
    peers.push(p)
    return p
  }

  it('STARSOCK_TRUST_PROXY=0 leaves trust-proxy off: a client claiming another X-Forwarded-For still counts as its own IP', async () => {
    const { url, err } = await serve({ STARSOCK_TRUST_PROXY: '0' }, ['--max-peers-per-ip', '1'])
    expect(url, err).toBeDefined()
    await peer(url ?? '', '203.0.113.1')
    await expect(peer(url ?? '', '203.0.113.2')).rejects.toMatchObject({ code: 'E_LIMIT_PEERS_PER_IP' })
  })

  it('STARSOCK_TRUST_PROXY=yes turns it on: the appended X-Forwarded-For entry counts', async () => {
    const { url, err } = await serve({ STARSOCK_TRUST_PROXY: 'yes' }, ['--max-peers-per-ip', '1'])
    expect(url, err).toBeDefined()
    await peer(url ?? '', '203.0.113.1')
    await peer(url ?? '', '203.0.113.2')
  })

  it('DISABLE_METRICS=0 and =false keep /metrics; =1 and =TRUE remove it', async () => {
    for (const [value, status] of [['0', 200], ['false', 200], ['', 200], ['1', 404], ['TRUE', 404]] as const) {
      const { url, err } = await serve({ DISABLE_METRICS: value })
      expect(url, err).toBeDefined()
      expect([value, (await fetch(`${url ?? ''}/metrics`)).status]).toEqual([value, status])
      for (const proc of started.splice(0)) await stopProcess(proc, 'starsock serve')
    }
  })

  it('DISABLE_CRYPTO_CHALLENGE=0 and =off keep the join challenge (the hello answer says so); =on turns it off', async () => {
    for (const [value, on] of [['0', true], ['off', true], ['on', false]] as const) {
      const { url, err } = await serve({ DISABLE_CRYPTO_CHALLENGE: value })
      expect(url, err).toBeDefined()
      const socket = io(url ?? '', { transports: ['websocket'], reconnection: false, forceNew: true })
      try {
        const [error, answer] = await request(socket, 'starsock:hello', [{}]) as [unknown, { cryptoChallenge: boolean }]
        expect(error).toBeNull()
        expect([value, answer.cryptoChallenge]).toEqual([value, on])
      } finally {
        socket.close()
      }
      for (const proc of started.splice(0)) await stopProcess(proc, 'starsock serve')
    }
  })

  it('STARSOCK_GATEWAY=0 runs no gateway peer (=1 does: it fails on an unusable key file before listening)', async () => {
    // With --allow-peer the gateway's key is loaded before the server listens: a key under
    // /dev/null cannot be made, so a gateway that is on ends serve with exit 1 right away.
    const extra = ['--allow-peer', '12D3KooWGzh9D9AgUqUmxjEbvEzsJnUoYNNpRKskpNVCjn5yDvBt', '--gateway-key', '/dev/null/gateway-key']
    const off = await serve({ STARSOCK_GATEWAY: '0' }, extra)
    expect(off.url, off.err).toBeDefined()
    expect(off.out).not.toMatch(/^gateway peer /m)
    for (const proc of started.splice(0)) await stopProcess(proc, 'starsock serve')
    const on = await serve({ STARSOCK_GATEWAY: '1' }, extra)
    expect([on.url, on.code]).toEqual([undefined, 1])
  })

  it('any other value is a one-line error and exit 1, for every switch', async () => {
    for (const name of ['STARSOCK_TRUST_PROXY', 'STARSOCK_UDP_RELAY', 'STARSOCK_GATEWAY', 'DISABLE_METRICS', 'DISABLE_CRYPTO_CHALLENGE', 'DISABLE_STRICT_MULTIADDR']) {
      const { url, code, err } = await serve({ [name]: 'maybe' })
      expect([name, url, code]).toEqual([name, undefined, 1])
      expect(err).toBe(`starsock serve: ${name}="maybe": an on/off variable takes 1, true, yes, on or 0, false, no, off (or empty)\n`)
    }
  })
})
