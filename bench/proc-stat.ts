/** What /proc tells about a process: its CPU time, its children, its memory (Linux). */
import { readFileSync } from 'node:fs'

/** Clock ticks per second of the times in `/proc/PID/stat` (USER_HZ, `getconf CLK_TCK`: 100 on Linux). */
const CLK_TCK = 100

/** CPU seconds (user + system) a process used so far. */
export function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Pids of a process's live children (Linux 3.5+). */
export function childPids (pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((p) => p !== '').map(Number)
  } catch {
    return [] // the process is gone
  }
}

/**
 * CPU seconds of a process and its descendants: its own, its reaped children's, and its live
 * children's (for a server that forks per connection, like websockify).
 */
export function treeCpuSeconds (pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    const own = (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / CLK_TCK
    return own + childPids(pid).reduce((sum, child) => sum + treeCpuSeconds(child), 0)
  } catch {
    return 0 // the process is gone (a child reaped meanwhile: its time is in the parent's)
  }
}

/** Resident memory of a process, in MiB. */
export function rssMiB (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return Number(m?.[1] ?? NaN) / 1024
  } catch {
    return NaN // the process is gone
  }
}
