/**
 * The README and docs/ as a user meets them: every relative link and `#anchor` resolves (GitHub's
 * anchor rules), screen one shows the set-up commands and the quick start, and the quick start
 * works as written: its two blocks are taken from README.md and run for real (`npm start`, two
 * `starsock` peers, `curl` through the tunnel), with only the ports and HOME substituted.
 */
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { afterEach, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const README = join(ROOT, 'README.md')
/** What a reader sees before scrolling. */
const SCREEN_ONE_LINES = 40

/** The markdown files whose links are checked: README.md and every docs/*.md. */
function markdownFiles (): string[] {
  const docs = join(ROOT, 'docs')
  return [README, ...readdirSync(docs).filter((f) => f.endsWith('.md')).map((f) => join(docs, f))]
}

/** The text outside fenced code blocks, line by line (a fenced line becomes empty). */
function proseLines (text: string): string[] {
  let fence: string | null = null
  return text.split('\n').map((line) => {
    const m = /^\s*(`{3,}|~{3,})/.exec(line)
    if (m !== null) {
      const marker = m[1] ?? ''
      if (fence === null) fence = marker[0] ?? ''
      else if (marker.startsWith(fence)) fence = null
      return ''
    }
    return fence === null ? line : ''
  })
}

/**
 * GitHub's heading anchor (github-slugger): the heading's text as rendered (no code ticks, emphasis
 * or link targets), lower case, every character that is not a letter, mark, number, connector
 * (`_`), space or hyphen removed, spaces as hyphens; a repeated one gets `-1`, `-2`, ...
 */
function githubSlug (heading: string): string {
  const text = heading
    .replace(/<[^>]+>/g, '')
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
  return text.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** Every anchor a markdown file has: its headings' slugs (with GitHub's -N for repeats) and HTML ids. */
function anchorsOf (text: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of proseLines(text)) {
    const heading = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading !== null) {
      const slug = githubSlug(heading[1] ?? '')
      const n = seen.get(slug) ?? 0
      seen.set(slug, n + 1)
      anchors.add(n === 0 ? slug : `${slug}-${n}`)
    }
    for (const m of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1] ?? '')
  }
  return anchors
}

/** The link targets of a markdown text (inline links, images, reference definitions, HTML href/src), outside code. */
function linkTargets (text: string): string[] {
  const targets: string[] = []
  for (const raw of proseLines(text)) {
    const line = raw.replace(/`[^`]*`/g, '')
    for (const m of line.matchAll(/!?\[(?:[^\]]|\][^(])*?\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1] ?? '')
    for (const m of line.matchAll(/<(?:a|img)\s[^>]*?(?:href|src)="([^"]+)"/g)) targets.push(m[1] ?? '')
    const ref = /^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line)
    if (ref !== null) targets.push(ref[1] ?? '')
  }
  return targets
}

/** What is wrong with each relative link of `file` (empty when every one resolves). */
function brokenLinks (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const broken: string[] = []
  for (const target of linkTargets(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue // absolute URL
    const hash = target.indexOf('#')
    const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
    const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1))
    const to = path === '' ? file : resolve(dirname(file), path)
    const where = `${relative(ROOT, file)}: (${target})`
    if (!to.startsWith(ROOT)) { broken.push(`${where} leaves the repository`); continue }
    if (!existsSync(to)) { broken.push(`${where}: no file ${relative(ROOT, to)}`); continue }
    if (anchor === null || anchor === '') continue
    if (!to.endsWith('.md')) { broken.push(`${where}: an anchor into a file that is not markdown`); continue }
    if (!anchorsOf(readFileSync(to, 'utf8')).has(anchor)) broken.push(`${where}: no heading with anchor #${anchor} in ${relative(ROOT, to)}`)
  }
  return broken
}

/** The shell block that follows `<!-- quickstart:NAME -->` in the README, as its lines. */
function quickstartBlock (readme: string, name: string): string {
  const marker = `<!-- quickstart:${name} -->`
  const at = readme.indexOf(marker)
  if (at === -1) throw new Error(`README.md has no ${marker} before the quick start's ${name} block`)
  const m = /^\s*```(?:sh|bash|console)?\n([\s\S]*?)\n```/.exec(readme.slice(at + marker.length))
  if (m === null) throw new Error(`README.md: ${marker} is not followed by a fenced sh block`)
  return m[1] ?? ''
}

/** A TCP port free on 127.0.0.1 right now. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** A shell script run in its own process group, with its output; `kill` ends the whole group. */
interface Shell {
  out: () => string
  exited: Promise<number | null>
  kill: () => Promise<void>
}

/** Run `script` with bash in the checkout, in a process group of its own (so its `&` jobs die with it). */
function runShell (script: string, env: NodeJS.ProcessEnv): Shell {
  const proc = spawn('bash', ['-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
  // 'exit', not 'close': the script's `&` jobs keep its output pipes open after bash has ended.
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const signalGroup = (signal: NodeJS.Signals): void => {
    try { process.kill(-(proc.pid ?? 0), signal) } catch {}
  }
  return {
    out: () => out,
    exited,
    kill: async () => {
      signalGroup('SIGTERM')
      const ended = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 8000))])
      signalGroup('SIGKILL') // the group's `&` jobs too, whether or not bash itself has gone
      if (!ended) await exited
    }
  }
}

/** Resolve once `check` does, polling every 100 ms; reject after `ms` saying what it waited for (`what()`, read then). */
async function until (what: () => string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what()} within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('README.md and docs/', () => {
  it('slugs headings as GitHub does', () => {
    const table: Array<[string, string]> = [
      ['End-to-end encryption', 'end-to-end-encryption'],
      ['One agent, many tunnels: starsock up', 'one-agent-many-tunnels-starsock-up'],
      ['Garbage collection, messages and writes on the tunnel path', 'garbage-collection-messages-and-writes-on-the-tunnel-path'],
      ['Tunnel commands: listen, forward, expose', 'tunnel-commands-listen-forward-expose'],
      ['The `up` config (TOML)', 'the-up-config-toml'],
      ['**Bold** and [a link](x.md)', 'bold-and-a-link'],
      ['snake_case 2.0 — über', 'snake_case-20--über']
    ]
    for (const [heading, slug] of table) expect(githubSlug(heading), heading).toBe(slug)
    expect([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n### A')]).toEqual(['a', 'a-1', 'a-2'])
    expect(linkTargets('see [x](docs/a.md#b), ![i](img.png "t") and `[no](code.md)`\n```\n[no](fenced.md)\n```\n[r]: ref.md\n<img alt="p" src="docs/p.png">'))
      .toEqual(['docs/a.md#b', 'img.png', 'ref.md', 'docs/p.png'])
  })

  it('has every relative link and #anchor resolve, in README.md and every docs/*.md', () => {
    const files = markdownFiles()
    expect(files.length).toBeGreaterThan(10) // the reference lives in docs/ now
    const broken = files.flatMap(brokenLinks)
    expect(broken, broken.join('\n')).toEqual([])
  })

  it('names, on screen one, the two set-up commands, the no-clone ones (not published yet: the packed clone today), the whole quick start in the clone\'s folder, the screenshot and a short comparison', () => {
    const screenOne = readFileSync(README, 'utf8').split('\n').slice(0, SCREEN_ONE_LINES).join('\n')
    for (const text of ['npm start', 'npm test', 'npx starsock serve', 'npm i starsock', 'not yet', 'npm pack && npm i -g ./starsock-', 'in the clone\'s folder',
      '<!-- quickstart:terminal-1 -->', '<!-- quickstart:terminal-2 -->', '<!-- quickstart:end -->',
      '](docs/images/page.png)', 'chisel', '](#next-to-the-tools-you-know)']) {
      expect(screenOne, `screen one (the first ${SCREEN_ONE_LINES} lines of README.md) names ${text}`).toContain(text)
    }
    expect(quickstartBlock(screenOne, 'terminal-1').trim()).toBe('npm start')
    // A new terminal opens in ~, where npx starsock would ask the registry: the block says where to run it.
    expect(quickstartBlock(screenOne, 'terminal-2').split('\n')[0]).toMatch(/^# in the clone's folder/)
    // The tarball name the README gives is the one npm pack makes.
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(screenOne).toContain(`npm pack && npm i -g ./starsock-${version}.tgz`)
  })

  it('compares starsock with the tools people know, and links the reference in docs/', () => {
    const readme = readFileSync(README, 'utf8')
    for (const tool of ['libp2p-websocket-star-rendezvous', 'chisel', 'frp', 'wstunnel', 'ngrok', 'websockify']) expect(readme, `README.md names ${tool}`).toContain(tool)
    for (const page of ['protocol', 'errors', 'options', 'cli', 'benchmarks', 'library', 'logs', 'deploy']) expect(readme, `README.md links docs/${page}.md`).toContain(`](docs/${page}.md)`)
  })

  it('has a client snippet that type-checks against the package as users import it (by name, from dist/node)', () => {
    const m = /## In code\n+```ts\n([\s\S]*?)\n```/.exec(readFileSync(README, 'utf8'))
    expect(m, 'README.md has a ts block under "## In code"').not.toBeNull()
    // Inside the checkout, so `starsock` resolves to this package by its exports (a self-reference).
    const dir = join(ROOT, 'test-artifacts', 'readme-snippet')
    mkdirSync(dir, { recursive: true })
    const file = join(dir, 'snippet.ts')
    writeFileSync(file, `declare const otherPeerId: string\n${m?.[1] ?? ''}\nexport {}\n`)
    const program = ts.createProgram([file], {
      module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
      strict: true, noEmit: true, skipLibCheck: true, types: ['node']
    })
    const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
    expect(problems, problems.join('\n')).toEqual([])
  })

  it('shows a picture of the page that exists and stays small', () => {
    const readme = readFileSync(README, 'utf8')
    expect(readme).toContain('](docs/images/page.png)')
    const png = join(ROOT, 'docs', 'images', 'page.png')
    expect(readFileSync(png).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    expect(statSync(png).size).toBeLessThan(300 * 1024)
  })
})

describe('npm start and npm test on a checkout that shares node_modules', () => {
  let dir: string | undefined
  afterEach(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }) })

  it('leaves a symlinked node_modules (a git worktree sharing an install) alone, even with a newer lock', async () => {
    // npm ci would empty the folder the link points to, under every other checkout's feet.
    dir = mkdtempSync(join(tmpdir(), 'starsock-ensure-deps-'))
    const shared = join(dir, 'shared-node_modules')
    const checkout = join(dir, 'checkout')
    mkdirSync(join(checkout, 'scripts'), { recursive: true })
    mkdirSync(join(shared, 'kept'), { recursive: true })
    writeFileSync(join(shared, '.package-lock.json'), '{}\n')
    copyFileSync(join(ROOT, 'scripts', 'ensure-node-deps.sh'), join(checkout, 'scripts', 'ensure-node-deps.sh'))
    writeFileSync(join(checkout, 'package.json'), JSON.stringify({ name: 'x', version: '1.0.0', private: true }))
    writeFileSync(join(checkout, 'package-lock.json'), JSON.stringify({ name: 'x', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'x', version: '1.0.0' } } }))
    utimesSync(join(shared, '.package-lock.json'), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000)) // the lock is newer
    symlinkSync(shared, join(checkout, 'node_modules'))
    const run = runShell(`bash ${JSON.stringify(join(checkout, 'scripts', 'ensure-node-deps.sh'))}`, { ...process.env, npm_config_offline: 'true' })
    const code = await Promise.race([run.exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000))])
    if (code === 'timeout') await run.kill()
    expect(code, `ensure-node-deps.sh exits 0 (output: ${run.out()})`).toBe(0)
    expect(run.out(), 'it ran no npm ci').not.toContain('installing npm packages')
    expect(run.out(), 'it says why it did not install').toContain('link to a shared install')
    expect(existsSync(join(shared, 'kept')), 'the shared install is untouched').toBe(true)
    expect(lstatSync(join(checkout, 'node_modules')).isSymbolicLink(), 'the link is still a link').toBe(true)
  })

  it('decides by the lock\'s content, not its date: a touched lock installs nothing, a changed one does (--check says so)', () => {
    dir = mkdtempSync(join(tmpdir(), 'starsock-ensure-deps-'))
    const checkout = join(dir, 'checkout')
    mkdirSync(join(checkout, 'scripts'), { recursive: true })
    mkdirSync(join(checkout, 'node_modules'), { recursive: true })
    copyFileSync(join(ROOT, 'scripts', 'ensure-node-deps.sh'), join(checkout, 'scripts', 'ensure-node-deps.sh'))
    const lock = join(checkout, 'package-lock.json')
    writeFileSync(lock, JSON.stringify({ name: 'x', version: '1.0.0', lockfileVersion: 3 }))
    writeFileSync(join(checkout, 'node_modules', '.package-lock.json'), '{}\n')
    const check = (): number | null => spawnSync('bash', [join(checkout, 'scripts', 'ensure-node-deps.sh'), '--check'], { encoding: 'utf8' }).status
    // Installed from this lock: its hash is the one npm ci was run for.
    const sha = spawnSync('sha256sum', [lock], { encoding: 'utf8' }).stdout.split(' ')[0] ?? ''
    writeFileSync(join(checkout, 'node_modules', '.starsock-lock-sha256'), sha + '\n')
    utimesSync(join(checkout, 'node_modules', '.package-lock.json'), new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000))
    expect(check(), 'a lock newer by date but the same content needs no install').toBe(0)
    writeFileSync(lock, JSON.stringify({ name: 'x', version: '1.0.1', lockfileVersion: 3 }))
    expect(check(), 'a changed lock needs npm ci').toBe(1)
    // No record (npm ci run by hand): an install newer than the lock counts as its, and is recorded.
    rmSync(join(checkout, 'node_modules', '.starsock-lock-sha256'))
    expect(check(), 'an install older than the lock, with no record, needs npm ci').toBe(1)
    utimesSync(join(checkout, 'node_modules', '.package-lock.json'), new Date(Date.now() + 60_000), new Date(Date.now() + 60_000))
    expect(check(), 'an install newer than the lock, with no record, is taken as its').toBe(0)
    expect(readFileSync(join(checkout, 'node_modules', '.starsock-lock-sha256'), 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/)
    rmSync(join(checkout, 'node_modules'), { recursive: true })
    expect(check(), 'no node_modules needs npm ci').toBe(1)
  })
})

describe('the README quick start, run as written', () => {
  const shells: Shell[] = []
  let home: string | undefined

  afterEach(async () => {
    for (const shell of shells.splice(0)) await shell.kill()
    if (home !== undefined) rmSync(home, { recursive: true, force: true })
  })

  it('carries a request through the tunnel: terminal 1 runs npm start, terminal 2 the peers and curl', async () => {
    // npm start installs what is missing: in a test that would be a whole npm ci, so say so instead.
    const check = spawnSync('bash', [join(ROOT, 'scripts', 'ensure-node-deps.sh'), '--check'], { encoding: 'utf8' })
    expect(check.status, `node_modules is not this lock's install: run npm ci (npm test does) before this test (${check.stderr})`).toBe(0)

    const readme = readFileSync(README, 'utf8')
    const terminal1 = quickstartBlock(readme, 'terminal-1')
    const terminal2 = quickstartBlock(readme, 'terminal-2')
    expect(terminal2, 'terminal 2 uses the default port 9090 and the forward 9091').toMatch(/\b9090\b[\s\S]*\b9091\b/)

    const [port, forwardPort] = [await freePort(), await freePort()]
    home = mkdtempSync(join(tmpdir(), 'starsock-readme-home-'))
    // Only loopback: npx finds this checkout's starsock without the registry, and npm's update notice stays off.
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, npm_config_offline: 'true', npm_config_update_notifier: 'false' }
    delete env.STARSOCK_KEY
    delete env.STARSOCK_TOKEN

    // Terminal 1, as written; the port (and, to stay on loopback, the host) through the environment.
    const server = runShell(terminal1, { ...env, PORT: String(port), HOST: '127.0.0.1' })
    shells.push(server)
    await until(() => `the server of "${terminal1}" answering /healthz on port ${port} (output: ${server.out().slice(-2000)})`, async () => {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null)
      return res?.ok === true
    }, 90_000)

    // Terminal 2, as written, with the two ports swapped for free ones.
    const script = terminal2.replace(/\b9090\b/g, String(port)).replace(/\b9091\b/g, String(forwardPort))
    const peers = runShell(script, env)
    shells.push(peers)
    const code = await Promise.race([peers.exited, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 90_000))])
    expect(code, `terminal 2 ends with curl's success (output:\n${peers.out()})`).toBe(0)
    // curl's "ok" is the server's /healthz answer, which reached it only through the forward's port.
    await until(() => `curl's "ok" through the tunnel (output:\n${peers.out()})`, async () => /(^|\n)ok/.test(peers.out()), 5000)
    expect(peers.out(), 'the forward is up between the two ports').toContain(`forwarding tcp 127.0.0.1:${forwardPort} -> 127.0.0.1:${port}`)
    await until(() => `peer A's line for the tunneled connection (output:\n${peers.out()})`, async () =>
      new RegExp(`channel \\d+ of #\\d+ connect/tcp 127\\.0\\.0\\.1:${port} from 127\\.0\\.0\\.1:`).test(peers.out()), 10_000)
    expect(existsSync(join(home, '.starsock', 'a.key')) && existsSync(join(home, '.starsock', 'b.key')), 'the two keys were made under HOME').toBe(true)
  }, 240_000)
})
