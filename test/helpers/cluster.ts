/**
 * A real cluster for tests: Debian's `redis-server` on a Unix socket in a temporary folder (no
 * port to collide, nothing written to disk), and `starsock serve --redis` nodes as child processes
 * (so `kill -9` and `SIGSTOP` are real). Everything started here is stopped by pid in `cleanup`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPeer, type StarsockPeer } from '../../client/peer.ts'
import { Programs, type Program } from './programs.ts'
import { waitFor } from './server.ts'

export const REDIS_SERVER = '/usr/bin/redis-server'

/** A `redis-server` this test started. */
export interface TestRedis {
  /** Its Unix socket: what `--redis` takes. */
  readonly socket: string
  /** Its temporary folder (removed by `TestCluster.cleanup`). */
  readonly dir: string
  readonly proc: () => ChildProcess
  /** Stop it (SIGTERM, SIGKILL after 5 s); its data is gone (no persistence). */
  stop: () => Promise<void>
  /** Start it again on the same socket, empty. */
  start: () => Promise<void>
}

/** Start `redis-server` on a Unix socket in a new temporary folder, without persistence. */
export async function startRedis (): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'starsock-redis-'))
  const socket = join(dir, 'redis.sock')
  let proc: ChildProcess | undefined
  const start = async (): Promise<void> => {
    proc = spawn(REDIS_SERVER, ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' })
    const p = proc
    await waitFor('redis-server to listen on its socket', () => existsSync(socket) || p.exitCode !== null, 10_000)
    if (p.exitCode !== null) throw new Error(`redis-server exited with ${p.exitCode}`)
  }
  const stop = async (): Promise<void> => {
    const p = proc
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()))
    p.kill('SIGTERM')
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
    rmSync(socket, { force: true })
  }
  await start()
  return { socket, dir, proc: () => proc as ChildProcess, stop, start }
}

/** A `starsock serve` node of a test cluster. */
export interface TestNode {
  program: Program
  /** `http://127.0.0.1:PORT` */
  url: string
  port: number
}

/** A test's cluster: its Redis, its nodes, and the programs to stop. */
export class TestCluster {
  readonly programs = new Programs()
  readonly nodes: TestNode[] = []
  /** Peers made by `peer`, closed first in `cleanup`. */
  readonly peers: StarsockPeer[] = []
  redis: TestRedis | undefined
  readonly secret = 'test-cluster-secret-0123456789'

  /** Start Redis (once) and `count` nodes; `extra` flags go to every node. */
  async start (count: number, extra: string[] = []): Promise<TestNode[]> {
    this.redis ??= await startRedis()
    const started = await Promise.all(Array.from({ length: count }, async () => await this.node(extra)))
    return started
  }

  /** Start one more node. */
  async node (extra: string[] = []): Promise<TestNode> {
    if (this.redis === undefined) this.redis = await startRedis()
    const { program, url, port } = await this.programs.serve(0, [
      '--redis', this.redis.socket,
      '--cluster-listen', '127.0.0.1:0',
      '--cluster-secret', this.secret,
      '--cluster-node-ttl-ms', '3000',
      ...extra
    ])
    const node = { program, url, port }
    this.nodes.push(node)
    return node
  }

  /** A starsock peer joined to `node`, closed in `cleanup`. */
  async peer (node: TestNode): Promise<StarsockPeer> {
    const p = await createPeer({ server: node.url })
    this.peers.push(p)
    return p
  }

  /** Close the peers, stop every node, then Redis. */
  async cleanup (): Promise<void> {
    for (const p of this.peers.splice(0)) await p.close().catch(() => {})
    for (const node of this.nodes) {
      // A node a test froze must be thawed to hear SIGTERM.
      if (node.program.proc.exitCode === null) node.program.proc.kill('SIGCONT')
    }
    await this.programs.cleanup()
    await this.redis?.stop()
    if (this.redis !== undefined) rmSync(this.redis.dir, { recursive: true, force: true })
    this.redis = undefined
    this.nodes.length = 0
  }
}
