/**
 * The control plane's writes to Redis, each one Lua script (atomic: the peers hash, the node's
 * set and the change log change together, and no other node sees half of it). Keys, under a
 * prefix (`starsock:`), are described in docs/cluster.md:
 * - `peers`: hash addr -> JSON `{ n: nodeId, s: seq of its join, p: profile|null, c: claim JSON text }`
 * - `log`: stream of `join|leave|profile` entries (fields t, a, n, s, p; a join's c, o, x; a
 *   leave's c), trimmed (`MAXLEN ~`)
 * - `seq`: the global sequence number (one per log entry)
 * - `node:<id>`: JSON `{ link, startedMs }`, with a time-to-live the node refreshes
 * - `nodes`: hash id -> link; `nodepeers:<id>`: set of the node's addresses
 * - `reserved`: hash identity (the address' peer id) -> JSON `{ a: address, c: reservation JSON,
 *   s: seq of the reserved address' join }` of a leave (a dropped starsock client's identity);
 *   `reserveduntil`: sorted set identity -> when it ends (ms, Redis' clock). It ends as on one
 *   node: a starsock join of the identity under any spelling, a legacy join of the address; and a
 *   clean leave of a starsock address of it joined later (the client came back there before its old
 *   node saw it drop, then left). Ended ones go a few at a time with each new one. A snapshot carries the live ones, so a node
 *   that re-reads one (a gap in the log) keeps the reservations of the leaves it missed.
 */
import { createHash } from 'node:crypto'
import type { Redis } from 'ioredis'

/** What every script starts with: its arguments' common part and the helpers the others use. */
const PRELUDE = `
local p = ARGV[1]
local maxlen = ARGV[2]
local function entry(node, seq, prof, claim)
  local c = ''
  if claim and claim ~= '' then c = ',"c":' .. cjson.encode(claim) end
  return '{"n":' .. cjson.encode(node) .. ',"s":' .. string.format('%d', seq) .. ',"p":' .. prof .. c .. '}'
end
local function logged(t, addr, node, prof, extra)
  local seq = redis.call('INCR', p .. 'seq')
  local cmd = { 'XADD', p .. 'log', 'MAXLEN', '~', maxlen, '*', 't', t, 'a', addr, 'n', node, 's', string.format('%d', seq), 'p', prof }
  for i = 1, #extra, 2 do
    if extra[i + 1] ~= '' then
      cmd[#cmd + 1] = extra[i]
      cmd[#cmd + 1] = extra[i + 1]
    end
  end
  redis.call(unpack(cmd))
  return seq
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function unreserve(key)
  redis.call('HDEL', p .. 'reserved', key)
  redis.call('ZREM', p .. 'reserveduntil', key)
end
local function reserve(key, addr, reserved, seq)
  local now = nowms()
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', p .. 'reserveduntil', '-inf', now, 'LIMIT', 0, 16)) do unreserve(k) end
  local ok, r = pcall(cjson.decode, reserved)
  if not ok or type(r) ~= 'table' or type(r.g) ~= 'number' then return end
  redis.call('HSET', p .. 'reserved', key, cjson.encode({ a = addr, c = reserved, s = seq }))
  redis.call('ZADD', p .. 'reserveduntil', now + math.floor(r.g), key)
end
-- The identity of an address (its peer id, from the node); the address itself when not given.
local function identity(key, addr)
  if key and key ~= '' then return key end
  return addr
end
-- JSON text decoded, or nil (what another version or a stray writer left must not fail a script).
local function decoded(text)
  if not text or text == '' then return nil end
  local ok, v = pcall(cjson.decode, text)
  if ok and type(v) == 'table' then return v end
  return nil
end
local function starsock(claim)
  local c = decoded(claim)
  return c ~= nil and c.k == 1
end
-- A join ends the identity's reservation as on one node: a starsock client under any spelling, a
-- legacy one only at the reserved address.
local function joined(key, addr, claim)
  local held = decoded(redis.call('HGET', p .. 'reserved', key))
  if held and (starsock(claim) or held.a == addr) then unreserve(key) end
end
local function join(addr, node, prof, claim, outcome, takes, key)
  if key then joined(identity(key, addr), addr, claim) end
  local old = redis.call('HGET', p .. 'peers', addr)
  if old then
    local o = cjson.decode(old)
    if o.n ~= node then redis.call('SREM', p .. 'nodepeers:' .. o.n, addr) end
  end
  local seq = logged('join', addr, node, prof, { 'c', claim, 'o', outcome, 'x', takes })
  redis.call('HSET', p .. 'peers', addr, entry(node, seq, prof, claim))
  redis.call('SADD', p .. 'nodepeers:' .. node, addr)
  return seq
end
-- A clean leave of a starsock client's address joined after the reserved one: the client came
-- back there before its old node saw it drop, and has left for good. (A legacy holder of another
-- spelling, or an older starsock one, ends nothing.)
local function leftFor(key, row)
  local held = decoded(redis.call('HGET', p .. 'reserved', key))
  if held and starsock(row.c) and type(row.s) == 'number' and type(held.s) == 'number' and row.s > held.s then unreserve(key) end
end
local function leave(addr, node, reserved, key)
  redis.call('SREM', p .. 'nodepeers:' .. node, addr)
  local cur = redis.call('HGET', p .. 'peers', addr)
  if not cur then return 0 end
  local row = cjson.decode(cur)
  if row.n ~= node then return 0 end
  redis.call('HDEL', p .. 'peers', addr)
  if reserved ~= '' then reserve(identity(key, addr), addr, reserved, row.s)
  elseif key then leftFor(identity(key, addr), row) end
  return logged('leave', addr, node, 'null', { 'c', reserved })
end
local function forget(node)
  local n = 0
  for _, a in ipairs(redis.call('SMEMBERS', p .. 'nodepeers:' .. node)) do
    if leave(a, node, '') > 0 then n = n + 1 end
  end
  redis.call('DEL', p .. 'nodepeers:' .. node)
  redis.call('HDEL', p .. 'nodes', node)
  return n
end
`

/** The scripts by name; ARGV[1] is the key prefix and ARGV[2] the log's length bound in every one. */
const BODIES = {
  /**
   * ARGV addr, node, profile JSON ('null'), claim JSON, outcome, address taken ('' for none), the
   * address' identity (peer id: its reservation ends): a join (the claim goes into the row and the
   * entry, the outcome and the address taken into the entry); returns its seq, or -1 when the node is not registered (reaped while frozen, or Redis
   * lost its data): it must \`sync\` first, or its entry would name a node no survivor ever reaps.
   */
  join: `
if redis.call('EXISTS', p .. 'node:' .. ARGV[4]) == 0 then return -1 end
return join(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])`,
  /**
   * ARGV addr, node, reservation JSON ('' for a clean leave: a reservation of the identity ends),
   * the address' identity (peer id): a leave, only if `node` still holds it (another node may have
   * taken it since); returns its seq or 0.
   */
  leave: 'return leave(ARGV[3], ARGV[4], ARGV[5], ARGV[6])',
  /** ARGV addr, node, profile JSON: a profile change of an address `node` holds; returns its seq or 0. */
  profile: `
local cur = redis.call('HGET', p .. 'peers', ARGV[3])
if not cur then return 0 end
local o = cjson.decode(cur)
if o.n ~= ARGV[4] then return 0 end
redis.call('HSET', p .. 'peers', ARGV[3], entry(o.n, o.s, ARGV[5], o.c))
return logged('profile', ARGV[3], ARGV[4], ARGV[5], {})`,
  /**
   * ARGV node, node JSON, link, ttl ms, min seq, then quads (addr, seq known here or 0, profile
   * JSON, claim JSON): register the node and make Redis hold exactly its peers (adds missing ones, removes
   * its entries that are gone). An address another node joined later than the seq known here
   * is left to it. Skips one sequence number, so every node re-reads a snapshot. Returns the seq
   * of each quad's entry, 0 for one left to another node.
   */
  sync: `
local node = ARGV[3]
redis.call('SET', p .. 'node:' .. node, ARGV[4], 'PX', ARGV[6])
redis.call('HSET', p .. 'nodes', node, ARGV[5])
if tonumber(redis.call('GET', p .. 'seq') or '0') < tonumber(ARGV[7]) then redis.call('SET', p .. 'seq', ARGV[7]) end
-- One number with no log entry: every follower sees a gap and re-reads a snapshot with this node's peers as they are now.
redis.call('INCR', p .. 'seq')
local want = {}
for i = 8, #ARGV, 4 do want[ARGV[i]] = true end
for _, a in ipairs(redis.call('SMEMBERS', p .. 'nodepeers:' .. node)) do
  if not want[a] then leave(a, node, '') end
end
local out = {}
for i = 8, #ARGV, 4 do
  local a, known, prof, claim = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  local cur = redis.call('HGET', p .. 'peers', a)
  local o = cur and cjson.decode(cur)
  if o and o.n == node then
    redis.call('SADD', p .. 'nodepeers:' .. node, a)
    if cur ~= entry(node, o.s, prof, claim) then
      redis.call('HSET', p .. 'peers', a, entry(node, o.s, prof, claim))
      logged('profile', a, node, prof, {})
    end
    out[#out + 1] = o.s
  elseif o and known > 0 and o.s > known then
    out[#out + 1] = 0
  else
    out[#out + 1] = join(a, node, prof, claim, '', '')
  end
end
return out`,
  /**
   * ARGV node, node JSON, ttl ms: refresh the node's key if it is still there. Returns
   * [lapsed (1 when the key was gone), then per member of \`nodes\`: id, link, key alive (0/1)].
   */
  heartbeat: `
local ok = redis.call('SET', p .. 'node:' .. ARGV[3], ARGV[4], 'PX', ARGV[5], 'XX')
local out = { ok and 0 or 1 }
local all = redis.call('HGETALL', p .. 'nodes')
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  out[#out + 1] = all[i + 1]
  out[#out + 1] = redis.call('EXISTS', p .. 'node:' .. all[i])
end
return out`,
  /** ARGV node: remove a node whose key lapsed, its peers (leaves logged) and its registration; -1 when it is alive or already gone. */
  reap: `
if redis.call('EXISTS', p .. 'node:' .. ARGV[3]) == 1 or redis.call('HEXISTS', p .. 'nodes', ARGV[3]) == 0 then return -1 end
return forget(ARGV[3])`,
  /** ARGV node: a node's clean goodbye: its peers (leaves logged), its key and registration; returns the leaves. */
  goodbye: `
redis.call('DEL', p .. 'node:' .. ARGV[3])
return forget(ARGV[3])`,
  /**
   * Everything a node rebuilds its copy from, at one instant: [last log id, seq, peers hash flat,
   * nodes hash flat, live reservations flat (identity, `{ a: address, c: reservation JSON, s: join seq }`, ms left)].
   */
  snapshot: `
local last = redis.call('XREVRANGE', p .. 'log', '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
local now = nowms()
local live = redis.call('ZRANGEBYSCORE', p .. 'reserveduntil', '(' .. now, '+inf', 'WITHSCORES')
local res = {}
for i = 1, #live, 2 do
  local r = redis.call('HGET', p .. 'reserved', live[i])
  if r then
    res[#res + 1] = live[i]
    res[#res + 1] = r
    res[#res + 1] = string.format('%d', tonumber(live[i + 1]) - now)
  end
end
return { id, redis.call('GET', p .. 'seq') or '0', redis.call('HGETALL', p .. 'peers'), redis.call('HGETALL', p .. 'nodes'), res }`
} as const

/** A script's name. */
export type ScriptName = keyof typeof BODIES

interface Script { lua: string, sha: string }

const SCRIPTS = Object.fromEntries(Object.entries(BODIES).map(([name, body]) => {
  const lua = PRELUDE + body
  return [name, { lua, sha: createHash('sha1').update(lua).digest('hex') }]
})) as Record<ScriptName, Script>

/**
 * Run script `name` with `args` after the prefix and the log bound: EVALSHA, and EVAL when Redis
 * does not know it (a restarted Redis has an empty script cache). Settles with the script's reply.
 */
export async function runScript (redis: Redis, prefix: string, logMax: number, name: ScriptName, args: Array<string | number>): Promise<unknown> {
  const script = SCRIPTS[name]
  const argv = [prefix, logMax, ...args]
  try {
    return await redis.evalsha(script.sha, 0, ...argv)
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
    return await redis.eval(script.lua, 0, ...argv)
  }
}
