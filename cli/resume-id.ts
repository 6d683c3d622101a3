/**
 * The resume id of a command run with a key file: a command restarted after a crash (`kill -9`)
 * takes up the id of the process that died, so the server, which holds the identity a while for
 * that process's reconnect, lets it back in; a second command beside a live one gets a fresh id
 * and is refused as before.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'

const RECORD = /^(\d+) ([0-9a-f]{64})\n?$/

/** Whether process `pid` runs (on this host). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The resume id for this process with `keyFile`, recorded in `<keyFile>.resume` (mode 0600) as
 * `pid id`. The id of a dead process is taken over by one process only: the first to create
 * `<keyFile>.resume.<deadPid>` (exclusive create), so two commands started at once after a crash
 * never share an id (sharing one would let them take the identity from each other in silence).
 * Any failure to read or write gives a fresh id, which costs only the resumption. `takeover`: this
 * process takes the identity from a live one, so the record becomes its own.
 */
export function resumeIdFor (keyFile: string, takeover = false): string {
  const file = `${keyFile}.resume`
  let id: string | undefined
  let claimed: string | undefined
  let holderAlive = false
  try {
    const m = RECORD.exec(readFileSync(file, 'utf8'))
    const pid = Number(m?.[1])
    holderAlive = m !== null && pid !== process.pid && alive(pid)
    if (m !== null && pid !== process.pid && !holderAlive) {
      claimed = `${file}.${pid}`
      closeSync(openSync(claimed, 'wx', 0o600))
      id = m[2]
    }
  } catch {}
  id ??= randomBytes(32).toString('hex')
  // Beside a live holder the record stays its own (this process will be refused): a restart
  // after that holder's crash must find its id. A takeover makes this process the holder.
  if (holderAlive && !takeover) return id
  try {
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, `${process.pid} ${id}\n`, { mode: 0o600 })
    renameSync(tmp, file)
    // Claims of earlier deaths are over (their records were replaced): keep only this one.
    const prefix = `${basename(file)}.`
    for (const name of readdirSync(dirname(file))) {
      const claim = join(dirname(file), name)
      if (name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)) && claim !== claimed) rmSync(claim, { force: true })
    }
  } catch {}
  return id
}
