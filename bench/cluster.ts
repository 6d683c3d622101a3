/**
 * The `cluster` scenario (issue 18): three `starsock serve --redis` nodes on one Redis (Debian's
 * `redis-server` on a Unix socket), beside the same work on one node in the same run:
 * - one stream, 64 MiB, between two peers on the same node and between peers on two nodes
 *   (through the node-to-node link), interleaved repeats (`bench/repeat.ts`);
 * - dial latency p50/p99 with 1,000 legacy peers spread over the three nodes: dials to peers on
 *   the dialer's node, and to peers on the two others, with a plain request round trip as reference;
 * - Redis commands per join and per dial: the calls the nodes made (their
 *   `starsock_cluster_redis_commands_total`, by kind: a join script, the log follower's reads,
 *   the membership heartbeat) and what Redis ran for them (`INFO commandstats`, commands inside
 *   scripts included).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuSeconds, freePort, servingWorker, start, startCommand, work, type Proc } from './procs.ts'
import { measurePaths, recordPath, WARMUP_BYTES, WARMUP_RUNS, type Path } from './repeat.ts'
import { formatFigure as fmt, type Row } from './rows.ts'

const MiB = 1024 * 1024
const GROUP = 'cluster'
const RUN_LIMIT_MS = 300_000
const SECRET = 'bench-cluster-secret-0123456789'
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** What the scenario needs from the harness. */
export interface ClusterBenchContext {
  /** Bytes of each one-stream run. */
  streamBytes: number
  repeats: number
  /** Joined peers over the three nodes, and dials measured each way. */
  peers: number
  dials: number
  record: (row: Row) => void
}

interface Node { name: string, url: string, port: number, proc: Proc }

/** `redis-server` on a Unix socket in a new temporary folder, without persistence. */
async function startRedis (): Promise<{ socket: string, proc: Proc, dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'starsock-bench-redis-'))
  const socket = join(dir, 'redis.sock')
  const proc = startCommand('/usr/bin/redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'])
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100)
  if (!existsSync(socket)) throw new Error('redis-server did not open its socket')
  return { socket, proc, dir }
}

/** A node with the bench's load limits (one IP, thousands of joins). */
async function startNode (name: string, redis: string): Promise<Node> {
  const port = await freePort()
  const proc = start(['bin/starsock.js', 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn',
    '--max-joins-per-ip-per-minute', '100000000', '--max-peers', '100000', '--max-peers-per-ip', '100000', '--max-connections-per-ip', '100000', '--max-dials-per-second', '100000', '--max-streams-per-socket', '100000',
    '--redis', redis, '--cluster-listen', '127.0.0.1:0', '--cluster-secret', SECRET])
  await proc.next(/^starsock http/, 20_000)
  return { name, url: `http://127.0.0.1:${port}`, port, proc }
}

/** Calls per command since Redis started (`INFO commandstats`). */
function commandCalls (socket: string): Map<string, number> {
  const out = spawnSync('redis-cli', ['-s', socket, 'INFO', 'commandstats'], { encoding: 'utf8' }).stdout
  const calls = new Map<string, number>()
  for (const m of out.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1] as string, Number(m[2]))
  return calls
}

/** Calls made between two `commandCalls` snapshots, in all and by command. */
function callsBetween (a: Map<string, number>, b: Map<string, number>): { total: number, by: Map<string, number> } {
  const by = new Map<string, number>()
  let total = 0
  for (const [cmd, n] of b) {
    const d = n - (a.get(cmd) ?? 0)
    if (d <= 0 || cmd === 'info') continue
    by.set(cmd, d)
    total += d
  }
  return { total, by }
}

const breakdown = (by: Map<string, number>, per: number): string =>
  [...by].sort((x, y) => y[1] - x[1]).slice(0, 5).map(([cmd, n]) => `${cmd} ${fmt(n / per)}`).join(', ')

/** Kinds of node calls that are the steady background: the heartbeat and the log follower's blocking reads. */
const BACKGROUND = new Set(['heartbeat', 'xread'])

/** The nodes' Redis calls by kind (`starsock_cluster_redis_commands_total`), summed over `nodes`. */
async function nodeCalls (nodes: Node[]): Promise<Map<string, number>> {
  const calls = new Map<string, number>()
  for (const node of nodes) {
    const text = await (await fetch(`${node.url}/metrics`)).text()
    for (const m of text.matchAll(/^starsock_cluster_redis_commands_total\{command="([^"]+)"\} (\d+)/gm)) {
      calls.set(m[1] as string, (calls.get(m[1] as string) ?? 0) + Number(m[2]))
    }
  }
  return calls
}

/** A crowd of `count` joined legacy peers on `node`, in a worker that answers dials. */
async function crowd (node: Node, count: number): Promise<{ proc: Proc, addrs: string[], joined: number, failed: number, seconds: number }> {
  const proc = start(['bench/worker.ts', 'crowd', JSON.stringify({ url: node.url, port: node.port, count })])
  return { proc, ...(JSON.parse((await proc.next(/^READY /, 600_000)).slice(6)) as { addrs: string[], joined: number, failed: number, seconds: number }) }
}

/** Run the scenario; every process it starts is stopped by its pid before it settles. */
export async function clusterBench ({ streamBytes, repeats, peers, dials, record }: ClusterBenchContext): Promise<void> {
  const stops: Array<() => Promise<void>> = []
  const redis = await startRedis()
  stops.push(async () => { await redis.proc.stop(); rmSync(redis.dir, { recursive: true, force: true }) })
  try {
    const nodes: Node[] = []
    for (const name of ['node1', 'node2', 'node3']) {
      const node = await startNode(name, redis.socket)
      nodes.push(node)
      stops.push(node.proc.stop)
    }
    const [n1, n2, n3] = nodes as [Node, Node, Node]
    await throughput(n1, n2, streamBytes, repeats, record, stops)
    await dialsAndCommands([n1, n2, n3], redis.socket, peers, dials, record)
  } finally {
    for (const stop of stops.reverse()) await stop()
  }
}

/** One stream, same node and across two nodes, interleaved. */
async function throughput (n1: Node, n2: Node, bytes: number, repeats: number, record: (row: Row) => void, stops: Array<() => Promise<void>>): Promise<void> {
  const clients = await servingWorker()
  stops.push(clients.stop)
  const worker = { role: 'both peers (worker)', pid: () => clients.pid }
  const run = (args: Record<string, unknown>) => async (b: number, streams: number) => await clients.run<{ mibPerSecond: number }>('throughputOurs', { ...args, bytes: b, streams }, RUN_LIMIT_MS)
  const paths: Path[] = [
    { name: 'same', run: run({ url: n1.url }), hops: [{ role: 'node 1', pid: () => n1.proc.pid, gc: true }, worker] },
    { name: 'cross', run: run({ url: n1.url, sinkUrl: n2.url }), hops: [{ role: 'node 1', pid: () => n1.proc.pid, gc: true }, { role: 'node 2', pid: () => n2.proc.pid, gc: true }, worker] }
  ]
  for (const p of paths) p.prepare = clients.gc
  const label = `1 stream, ${bytes / MiB} MiB, encrypted (default)`
  const m = await measurePaths(paths, { bytes, streams: 1, repeats, warmupBytes: WARMUP_BYTES, warmupRuns: WARMUP_RUNS })
  const same = m.get('same')?.value ?? NaN
  const ratio = (m.get('cross')?.value ?? NaN) / same
  recordPath(m.get('same'), paths[0] as Path, { group: GROUP, what: 'same node (reference)', label }, record)
  recordPath(m.get('cross'), paths[1] as Path, {
    group: GROUP,
    what: 'across two nodes',
    label,
    reference: { what: 'same node', value: same },
    note: Number.isFinite(ratio) ? `${ratio.toFixed(2)}x same node (goal: at least 0.7x)` : undefined,
    cpuReference: { 'node 1': { what: 'same node', value: m.get('same')?.cpu['node 1'] ?? NaN } }
  }, record)
}

/** Dial latency over a crowd spread on three nodes, and Redis commands per join and per dial. */
async function dialsAndCommands (nodes: [Node, Node, Node], redis: string, peers: number, dials: number, record: (row: Row) => void): Promise<void> {
  const [n1] = nodes
  const crowds: Array<Awaited<ReturnType<typeof crowd>>> = []
  try {
    const beforeJoins = commandCalls(redis)
    const nodesBeforeJoins = await nodeCalls(nodes)
    const t0 = Date.now()
    for (const [i, node] of nodes.entries()) crowds.push(await crowd(node, Math.floor(peers / 3) + (i < peers % 3 ? 1 : 0)))
    const joined = crowds.reduce((n, c) => n + c.joined, 0)
    await sleep(2000) // the last joins reach every node's copy
    const joinMs = Date.now() - t0
    const afterJoins = commandCalls(redis)
    const nodesAfterJoins = callsBetween(nodesBeforeJoins, await nodeCalls(nodes))
    // The steady membership refresh and the followers' blocking reads, over an idle stretch.
    const idleMs = 5000
    await sleep(idleMs)
    const afterIdle = commandCalls(redis)
    const idle = callsBetween(afterJoins, afterIdle).total / idleMs
    const joins = callsBetween(beforeJoins, afterJoins)
    const perJoin = (joins.total - idle * joinMs) / Math.max(1, joined)
    const scripts = [...nodesAfterJoins.by].filter(([kind]) => !BACKGROUND.has(kind)).reduce((n, [, c]) => n + c, 0)
    record({ group: GROUP, what: `Redis calls per join from the nodes, ${joined} joins over 3 nodes`, value: scripts / Math.max(1, joined), unit: 'calls', note: `${breakdown(nodesAfterJoins.by, Math.max(1, joined))} per join (xread: the 3 nodes' log followers, one read brings many entries; heartbeat: every ttl/3 per node, not per join)${crowds.some((c) => c.failed > 0) ? `, ${crowds.reduce((n, c) => n + c.failed, 0)} could not join` : ''}` })
    record({ group: GROUP, what: `Redis commands run per join (inside scripts too), ${joined} joins over 3 nodes`, value: perJoin, unit: 'cmds', note: `${breakdown(joins.by, Math.max(1, joined))} per join, the idle ${fmt(idle * 1000)}/s taken out` })

    const rtt = await work<{ p50: number, p99: number }>('rtt', { url: n1.url, count: dials })
    record({ group: GROUP, what: `one request round trip (reference), ${joined} peers over 3 nodes, node 1`, value: rtt.p99, unit: 'ms p99', note: `p50 ${fmt(rtt.p50)} ms` })
    const file = (name: string, addrs: string[]): string => {
      const f = join(tmpdir(), `starsock-bench-cluster-${name}-${process.pid}.json`)
      writeFileSync(f, JSON.stringify(addrs))
      return f
    }
    const sameFile = file('same', crowds[0]?.addrs ?? [])
    const crossFile = file('cross', crowds.slice(1).flatMap((c) => c.addrs))
    let sameP99 = NaN
    for (const [what, targetsFile] of [['to peers on the same node', sameFile], ['to peers on the two other nodes', crossFile]] as const) {
      const c0 = nodes.map((n) => cpuSeconds(n.proc.pid))
      const before = await nodeCalls(nodes)
      const t1 = Date.now()
      const r = await work<{ p50: number, p95: number, p99: number, failures: number, firstError?: string }>('dials', { url: n1.url, port: n1.port, targetsFile, count: dials })
      const ms = Date.now() - t1
      const calls = callsBetween(before, await nodeCalls(nodes))
      // The dialing client's own join and leave are two scripts, not the dials'.
      const dialCalls = [...calls.by].filter(([kind]) => !BACKGROUND.has(kind)).reduce((n, [, c]) => n + c, 0)
      const cpu = nodes.map((n, i) => cpuSeconds(n.proc.pid) - (c0[i] as number))
      const same = what === 'to peers on the same node'
      if (same) sameP99 = r.p99
      record({
        group: GROUP,
        what: `dial p50 / p99 ${what}, ${joined} peers over 3 nodes`,
        value: r.p99,
        unit: 'ms p99',
        reference: same ? { what: 'plain round trip', value: rtt.p99 } : { what: 'same node', value: sameP99 },
        serverCpu: cpu.reduce((a, b) => a + b, 0),
        note: `p50 ${fmt(r.p50)} ms, p95 ${fmt(r.p95)} ms; ${same ? '' : `${fmt(r.p99 / sameP99)}x same-node p99 (goal: at most 2x); `}node CPU ${cpu.map((c) => fmt(c)).join(' / ')} s${r.failures > 0 ? `, ${r.failures} failed (${String(r.firstError)})` : ''}`
      })
      record({ group: GROUP, what: `Redis calls per dial ${what}`, value: Math.max(0, dialCalls - 2) / dials, unit: 'calls', note: `goal: 0; during ${dials} dials in ${fmt(ms / 1000)} s the nodes made ${breakdown(calls.by, 1)} calls (the dialing client's own join and leave: 2 scripts; heartbeats and log reads are background)` })
    }
  } finally {
    for (const c of crowds) { c.proc.send('stop'); await c.proc.stop() }
  }
}
