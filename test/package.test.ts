/**
 * The npm package as a user gets it. `npm pack` runs on a clean copy of the sources (what git
 * tracks, plus new files it does not ignore; no dist/), so its `prepack` must build everything the
 * tarball ships, and the build never touches this checkout's dist/ that other tests run. The
 * tarball is installed into an empty project (no dev dependencies, no tsx), and there: the program
 * by `npx starsock`, the page it serves, a gateway tunnel through `up --config` and `forward`, a
 * Node script importing the entry points by name, tsc on a consumer's TypeScript, and a Vite build
 * of a page importing the browser entries.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectBytes } from './helpers/bytes.ts'
import { testBytes, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip } from './helpers/sockets.ts'
import { freePort } from './helpers/up.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = join(ROOT, 'test', 'fixtures', 'package')
const MANIFEST = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string, devDependencies: Record<string, string> }
/** The repo's own tools, run on the installed package (the project has none of them). */
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const VITE = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js')

/**
 * The environment for npm and the programs: without what a parent `npm test` exports about this
 * checkout (`npm_package_*`, `npm_config_local_prefix`, ...), which would point npm back at it.
 */
const KEEP_NPM = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig'])
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') || KEEP_NPM.has(k)))

/** Run a command to its end; fail with its output if it does not exit 0 (or times out). */
function run (cmd: string, args: string[], cwd: string, ms: number, env: NodeJS.ProcessEnv = ENV): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: ms, maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${cwd}: ${r.error?.message ?? `exit ${String(r.status ?? r.signal)}`}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`)
  return r
}

/** A long-running program of the installed package, stopped in afterAll. */
interface Started { out: () => string, err: () => string, exited: Promise<number | null>, stop: () => Promise<void> }
const started: Started[] = []
function start (cwd: string, args: string[]): Started {
  const proc = spawn(join(cwd, 'node_modules', '.bin', 'starsock'), args, { cwd, env: ENV, stdio: 'pipe' })
  let out = ''
  let err = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    proc.kill('SIGTERM')
    await within(`starsock ${args[0] ?? ''} to exit after SIGTERM`, exited, 10_000).catch(async () => { proc.kill('SIGKILL'); await exited })
  }
  const s = { out: () => out, err: () => err, exited, stop }
  started.push(s)
  return s
}

/** Settles with the first match of `re` in the program's stdout or stderr. */
async function said (p: Started, re: RegExp, what: string, ms = 20_000): Promise<RegExpExecArray> {
  return await within(`${what} (stdout: ${p.out().slice(-1500)} stderr: ${p.err().slice(-1500)})`, new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = re.exec(p.out()) ?? re.exec(p.err())
      if (m !== null) { clearInterval(timer); resolve(m) }
    }, 20)
    void p.exited.then((code) => { clearInterval(timer); reject(new Error(`exited with ${String(code)} before ${what}: ${p.err()}`)) })
  }), ms)
}

/**
 * Start `starsock serve` on a free port of 127.0.0.1 and settle with its URL once `/healthz`
 * answers (not from its output lines, whose wording is the CLI's to change).
 */
async function serve (cwd: string, extra: string[] = []): Promise<{ program: Started, url: string }> {
  const port = await freePort()
  const program = start(cwd, ['serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...extra])
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  while (!await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) {
    const exited = await Promise.race([program.exited.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 100))])
    if (exited || Date.now() > deadline) throw new Error(`starsock serve ${exited ? 'exited' : 'did not answer /healthz within 30000 ms'} at ${url} (stdout: ${program.out().slice(-1500)} stderr: ${program.err().slice(-1500)})`)
  }
  return { program, url }
}

/** Every file under `dir`, relative to it, with `/` separators. */
function walk (dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`])
}

describe('the npm package, packed by npm pack and installed into an empty project', () => {
  let tmp = ''
  /** The project that installed the tarball. */
  let app = ''
  /** The tarball's paths (without the `package/` prefix) and sizes. */
  let packed: { filename: string, size: number, unpackedSize: number, files: Array<{ path: string, size: number }> }

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'starsock-package-'))
    // A clean copy of the sources: what git tracks (and new, not ignored files), never dist/.
    const src = join(tmp, 'src')
    const listed = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], ROOT, 20_000).stdout.split('\0').filter((f) => f !== '')
    for (const file of listed) {
      if (!existsSync(join(ROOT, file))) continue // deleted in the work tree, not yet committed
      if (file === 'node_modules') continue // a symlink (a worktree's), which `node_modules/` does not ignore: linked below
      mkdirSync(dirname(join(src, file)), { recursive: true })
      cpSync(join(ROOT, file), join(src, file))
    }
    symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(src, 'node_modules'), 'dir')
    expect(existsSync(join(src, 'dist')), 'the copy has no dist/ (prepack must build it)').toBe(false)
    // `npm pack` runs `prepack` (the full build); its JSON report is the last thing on stdout.
    const out = run('npm', ['pack', '--json', '--pack-destination', tmp], src, 240_000).stdout
    const report = JSON.parse(out.slice(out.lastIndexOf('\n[\n') + 1)) as Array<typeof packed>
    packed = report[0] as typeof packed
    // An empty project installs the tarball as a user would (the npm cache holds what `npm ci` fetched).
    app = join(tmp, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }, null, 2))
    run('npm', ['install', join(tmp, packed.filename), '--no-audit', '--no-fund', '--prefer-offline'], app, 180_000)
  }, 420_000)

  afterAll(async () => {
    for (const p of started.splice(0)) await p.stop()
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true })
  })

  it('holds the compiled program, its declarations, the built page, the browser bundle, README and LICENSE, and no sources, tests or benchmarks', () => {
    const paths = packed.files.map((f) => f.path)
    for (const must of ['package.json', 'README.md', 'LICENSE', 'bin/starsock.js', 'bin/node-flags.js', 'dist/node/cli/main.js', 'dist/node/server/index.js', 'dist/node/server/index.d.ts', 'dist/node/client/index.node.js', 'dist/node/client/index.node.d.ts', 'dist/node/client/browser.d.ts', 'dist/node/shared/index.js', 'dist/node/shared/index.d.ts', 'dist/node/client/noise/aead.node.js', 'dist/node/client/noise/aead.browser.js', 'dist/web/index.html', 'dist/browser/starsock-client.js', 'web/status.html']) {
      expect(paths, `the tarball holds ${must}`).toContain(must)
    }
    // The page's own files: every asset index.html references is in the tarball.
    const html = readFileSync(join(app, 'node_modules', 'starsock', 'dist', 'web', 'index.html'), 'utf8')
    const assets = [...html.matchAll(/(?:src|href)="(?:\.?\/)?(assets\/[^"]+)"/g)].map((m) => `dist/web/${m[1] ?? ''}`)
    expect(assets.some((a) => a.endsWith('.js')), `index.html references a script (${html.slice(0, 500)})`).toBe(true)
    for (const a of assets) expect(paths, `the tarball holds the page's ${a}`).toContain(a)
    // Every compiled module has its declarations next to it.
    const js = paths.filter((p) => p.startsWith('dist/node/') && p.endsWith('.js'))
    expect(js.length).toBeGreaterThan(50)
    for (const p of js) expect(paths, `the declarations of ${p}`).toContain(p.replace(/\.js$/, '.d.ts'))
    // Declarations name the modules the package ships: `./x.js`, never a `./x.ts` source (tsc keeps
    // those in declarations; scripts/declarations.js rewrites them), nor the package's own `#noise-aead`.
    const sourceSpecifier = /(?:\bfrom|\bimport\(|\bimport)\s*['"](?:\.{1,2}\/[^'"\n]*\.ts|#[^'"\n]*)['"]/
    const naming = paths.filter((p) => p.endsWith('.d.ts') && sourceSpecifier.test(readFileSync(join(app, 'node_modules', 'starsock', p), 'utf8')))
    expect(naming, 'declarations that import a .ts source or #noise-aead').toEqual([])
    const unwanted = paths.filter((p) => /^(test|bench|scripts|node_modules|\.ci|test-artifacts|shared|server|client|cli|web\/(?!status\.html$))\//.test(p) ||
      (/\.(ts|tsx|mts|cts)$/.test(p) && !/\.d\.ts$/.test(p)) || /(^|\/)\.[^/]+$/.test(p))
    expect(unwanted, 'sources, tests, benchmarks, scripts, dotfiles').toEqual([])
    // Source maps ship only with their sources inside (Vite's sourcesContent): none points at a file left out.
    for (const map of paths.filter((p) => p.endsWith('.map'))) {
      const m = JSON.parse(readFileSync(join(app, 'node_modules', 'starsock', map), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null> }
      expect(m.sourcesContent?.length, `${map} carries its sources`).toBe(m.sources.length)
      expect(m.sourcesContent?.every((s) => typeof s === 'string'), `${map} has every source's text`).toBe(true)
    }
  })

  it('installs with its runtime dependencies only: no tsx, no TypeScript, no test tools', () => {
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string>, peerDependencies?: Record<string, string> }> }
    // What some installed package needs (a dev dependency of starsock may also be one of these: ws).
    const needed = new Set(Object.values(lock.packages).flatMap((p) => [...Object.keys(p.dependencies ?? {}), ...Object.keys(p.optionalDependencies ?? {}), ...Object.keys(p.peerDependencies ?? {})]))
    for (const dev of Object.keys(MANIFEST.devDependencies)) {
      if (needed.has(dev)) continue
      expect(existsSync(join(app, 'node_modules', dev)), `dev dependency ${dev} is not installed`).toBe(false)
    }
    // No script runs at install: npm >= 11.16 warns about any (`prepare` included) and npm 12 can
    // refuse them (allowScripts); the tarball is built already.
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'starsock', 'package.json'), 'utf8')) as { scripts?: Record<string, string> }
    expect(Object.keys(installed.scripts ?? {}).filter((s) => ['preinstall', 'install', 'postinstall', 'prepare'].includes(s)), 'install-time scripts').toEqual([])
    for (const tool of ['tsx', 'typescript', 'vite', 'vitest', 'esbuild']) expect(existsSync(join(app, 'node_modules', tool)), `${tool} is not installed`).toBe(false)
    const shipped = walk(join(app, 'node_modules', 'starsock'))
    expect(shipped.filter((p) => /\.(ts|mts|cts)$/.test(p) && !p.endsWith('.d.ts')), 'no TypeScript source to run').toEqual([])
  })

  it('npx starsock --help and --version run the compiled program', () => {
    const help = run('npx', ['--no-install', 'starsock', '--help'], app, 60_000)
    expect(help.stdout).toMatch(/^Usage: starsock /)
    for (const command of ['serve', 'id', 'peers', 'listen', 'forward', 'expose', 'relay', 'up']) expect(help.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'))
    expect(help.stderr).toBe('')
    expect(run('npx', ['--no-install', 'starsock', '--version'], app, 60_000).stdout.trim()).toBe(MANIFEST.version)
  })

  it('npm install -g puts starsock on the PATH (a link to bin/starsock.js that finds the compiled program)', () => {
    const prefix = join(tmp, 'global')
    run('npm', ['install', '-g', '--prefix', prefix, join(tmp, packed.filename), '--no-audit', '--no-fund', '--prefer-offline'], tmp, 180_000)
    const r = run('starsock', ['--version'], tmp, 30_000, { ...ENV, PATH: `${join(prefix, 'bin')}${delimiter}${ENV.PATH ?? ''}` })
    expect(r.stdout.trim()).toBe(MANIFEST.version)
  }, 200_000)

  it('starsock serve serves the page at /, the script it references, and /healthz', async () => {
    const { program, url } = await serve(app)
    const page = await fetch(`${url}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await page.text()
    expect(html).toMatch(/<title>[^<]*starsock/i)
    const src = /<script[^>]+src="([^"]+)"/.exec(html)?.[1]
    expect(src, `a <script src> in the page (${html.slice(0, 500)})`).toBeDefined()
    const script = await fetch(new URL(src ?? '', `${url}/`))
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toMatch(/javascript/)
    expect((await script.text()).length).toBeGreaterThan(10_000)
    const health = await fetch(`${url}/healthz`)
    expect(health.status).toBe(200)
    await program.stop()
  }, 60_000)

  it('id, serve --gateway, up --config and forward: bytes reach a local echo through the gateway', async () => {
    const echo = await tcpEcho()
    try {
      // id makes the gateway's key and prints its peer id; serve --gateway then runs that peer.
      const gateway = run(join(app, 'node_modules', '.bin', 'starsock'), ['id', '--key', join(app, 'gateway.key')], app, 30_000).stdout.trim()
      expect(gateway).toMatch(/^12D3KooW\w+$/)
      const { program, url } = await serve(app, ['--gateway', '--gateway-key', join(app, 'gateway.key'), '--allow', `connect/tcp:127.0.0.1:${echo.port}`])
      // peers lists who is online: wait for the gateway peer to have joined.
      const deadline = Date.now() + 30_000
      for (;;) {
        const r = spawnSync(join(app, 'node_modules', '.bin', 'starsock'), ['peers', '--server', url], { cwd: app, env: ENV, encoding: 'utf8', timeout: 20_000 })
        if (r.stdout.includes(gateway)) break
        if (Date.now() > deadline) throw new Error(`the gateway peer ${gateway} not in starsock peers within 30000 ms (peers: ${r.stdout} ${r.stderr}; serve: ${program.err().slice(-1500)})`)
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      // up --config: the TOML config (toml-eslint-parser, zod) and a [[forward]] mapping.
      const port = await freePort()
      writeFileSync(join(app, 'near.toml'), `server = "${url}"\nkey = "near.key"\n\n[[forward]]\nname = "echo"\npeer = "${gateway}"\nlisten = "127.0.0.1:${port}"\nto = "127.0.0.1:${echo.port}"\n`)
      const up = start(app, ['up', '--config', join(app, 'near.toml'), '--json'])
      await said(up, /^(?=\{.*"event":"ready")(?=.*"id":"echo").*$/m, 'the ready event of mapping echo')
      const a = testBytes(200_000, 16)
      expectBytes(await within('the echo through up --config', tcpRoundTrip(port, a), 20_000), a, 'the echo through up --config')
      // forward, the one-tunnel command.
      const fwdPort = await freePort()
      const fwd = start(app, ['forward', '--server', url, '--key', join(app, 'fwd.key'), '--peer', gateway, '--listen', `127.0.0.1:${fwdPort}`, '--to', `127.0.0.1:${echo.port}`, '--json'])
      await said(fwd, /^(?=\{.*"event":"ready").*$/m, 'the ready event of forward')
      const b = testBytes(150_000, 17)
      expectBytes(await within('the echo through forward', tcpRoundTrip(fwdPort, b), 20_000), b, 'the echo through forward')
      await fwd.stop()
      await up.stop()
      await program.stop()
    } finally {
      echo.close()
    }
  }, 120_000)

  it('a Node script imports starsock/server and starsock by package name: two peers join, one dials the other, the bytes arrive, and it exits 0', () => {
    cpSync(join(FIXTURES, 'peers.mjs'), join(app, 'peers.mjs'))
    const r = run(process.execPath, ['peers.mjs'], app, 60_000)
    expect(JSON.parse(r.stdout.trim())).toEqual({ version: MANIFEST.version, same: true, bytes: 100_000, missing: 'E_PEER_NOT_FOUND', known: true })
  })

  it('a CommonJS program requires the package (require of ES modules, Node >= 20.19 as engines says)', () => {
    cpSync(join(FIXTURES, 'require.cjs'), join(app, 'require.cjs'))
    const r = run(process.execPath, ['require.cjs'], app, 60_000)
    expect(JSON.parse(r.stdout.trim())).toEqual({ version: MANIFEST.version, createServer: 'function', createPeer: 'function', Forward: 'function', codes: true })
    expect(r.stderr).toBe('')
  })

  it('tsc (module nodenext, strict, libraries checked) type-checks a file using the four entry points; the wrong uses fail', () => {
    cpSync(join(FIXTURES, 'consumer.ts'), join(app, 'consumer.ts'))
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: [] },
      files: ['consumer.ts']
    }, null, 2))
    const r = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: app, env: ENV, encoding: 'utf8', timeout: 120_000 })
    expect(r.stdout + r.stderr, 'tsc output').toBe('')
    expect(r.status).toBe(0)
  }, 150_000)

  it('a bundler sees the browser bundle and its types: tsc with the browser condition, and a Vite build with no Node built-ins', () => {
    cpSync(join(FIXTURES, 'browser.ts'), join(app, 'browser.ts'))
    // As Vite's templates set it up: no Node types, and skipLibCheck (a dependency's declarations,
    // @libp2p/interface's main-event, name `node:events`); the @ts-expect-error still fails on `any`.
    writeFileSync(join(app, 'tsconfig.browser.json'), JSON.stringify({
      compilerOptions: { module: 'preserve', moduleResolution: 'bundler', customConditions: ['browser'], target: 'es2022', lib: ['es2023', 'dom'], strict: true, noEmit: true, skipLibCheck: true, types: [] },
      files: ['browser.ts']
    }, null, 2))
    const r = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.browser.json'], { cwd: app, env: ENV, encoding: 'utf8', timeout: 120_000 })
    expect(r.stdout + r.stderr, 'tsc output').toBe('')
    expect(r.status).toBe(0)
    // Vite (the repo's) builds a page of the project that imports `starsock`, `starsock/client` and `starsock/browser`.
    cpSync(join(FIXTURES, 'vite'), join(app, 'page'), { recursive: true })
    const built = run(process.execPath, [VITE, 'build', '--logLevel', 'warn', '--outDir', 'dist', '--emptyOutDir'], join(app, 'page'), 120_000)
    expect(built.stdout + built.stderr, 'Vite warnings').not.toMatch(/externalized for browser compatibility|node:/)
    const js = walk(join(app, 'page', 'dist')).filter((p) => p.endsWith('.js')).map((p) => readFileSync(join(app, 'page', 'dist', p), 'utf8')).join('\n')
    expect(js.length).toBeGreaterThan(100_000)
    expect(js, 'no Node built-in in the page').not.toMatch(/__vite-browser-external|["']node:[a-z_]+["']/)
    // One copy of the bundle, however the page named it.
    const count = (text: string): number => text.split('E_PEER_NOT_FOUND').length - 1
    expect(count(js)).toBe(count(readFileSync(join(app, 'node_modules', 'starsock', 'dist', 'browser', 'starsock-client.js'), 'utf8')))
  }, 240_000)
})
