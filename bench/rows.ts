/**
 * The rows a benchmark run records, and how they are printed (the run's lines, the README's
 * markdown table); shared by the harness and the modules it runs. Every renderer takes a figure
 * that could not be measured (NaN, or `null` once a run went through JSON) and prints a dash.
 */

/** Steal past this share of the machine's CPU time makes a row's figures suspect: the run warns. */
export const STEAL_WARN_SHARE = 0.10

/** One measured figure, with its reference when there is one. */
export interface Row {
  /** The scenario that measured it (`--only` re-runs whole scenarios). */
  scenario?: string
  group: string
  what: string
  /** NaN when it could not be measured (`null` in the JSON file); `note` says why. */
  value: number
  unit: string
  reference?: { what: string, value: number }
  /** Server CPU seconds spent during the measurement. */
  serverCpu?: number
  /** Share (0 to 1) of all CPU time the hypervisor stole during the measurement (`/proc/stat`). */
  steal?: number
  /** When `value` is the median of repeats: their lowest, their highest and how many. */
  range?: { min: number, max: number, runs: number }
  note?: string
}

/** A finite number, or undefined for anything else (NaN, Infinity, `null` from JSON, a missing field). */
export function finite (n: unknown): number | undefined {
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined
}

/** A figure with as many decimals as its size deserves (none for integers and from 100 up); a dash for no figure. */
export function formatFigure (n: number | null | undefined): string {
  const x = finite(n)
  if (x === undefined) return '—'
  return Number.isInteger(x) ? String(x) : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)
}

/** `0.42x raw ws (221)`, or '' when the row or its reference has no figure (or the reference is 0). */
export function ratioText (row: Row): string {
  const value = finite(row.value)
  const ref = finite(row.reference?.value)
  if (row.reference === undefined || value === undefined || ref === undefined || ref === 0) return ''
  return `${(value / ref).toFixed(2)}x ${row.reference.what} (${formatFigure(ref)})`
}

/** `median of 3 (142–226)`, or '' for a single measurement. */
export function rangeText (row: Row): string {
  const r = row.range
  if (r === undefined || r === null || !(r.runs > 1)) return ''
  return `median of ${r.runs} (${formatFigure(r.min)}–${formatFigure(r.max)})`
}

/** `3.2%`, or '' when the steal was not measured. */
export function stealText (row: Row): string {
  const s = finite(row.steal)
  return s === undefined ? '' : `${(s * 100).toFixed(1)}%`
}

/** The warning the run prints under a row whose steal is past `STEAL_WARN_SHARE`, or undefined. */
export function stealWarning (row: Row): string | undefined {
  const s = finite(row.steal)
  if (s === undefined || s <= STEAL_WARN_SHARE) return undefined
  return `WARNING: steal ${stealText(row)} during "${row.what}" (past ${STEAL_WARN_SHARE * 100}%): the hypervisor took that share of the CPU; its figures are suspect`
}

/** The row as one line of the run's output. */
export function formatLine (row: Row): string {
  const value = finite(row.value) === undefined ? '—' : formatFigure(row.value)
  const parts = [`${row.group.padEnd(14)} ${row.what.padEnd(56)} ${value.padStart(8)} ${(row.unit ?? '').padEnd(9)}`]
  const extra = [rangeText(row), ratioText(row)].filter((t) => t !== '').join(', ')
  if (extra !== '') parts.push(extra)
  const cpu = finite(row.serverCpu)
  if (cpu !== undefined) parts.push(`[server cpu ${cpu.toFixed(2)} s]`)
  if (stealText(row) !== '') parts.push(`[steal ${stealText(row)}]`)
  if (row.note !== undefined && row.note !== null && row.note !== '') parts.push(row.note)
  return parts.join('  ')
}

/** What a results file holds. */
export interface Results {
  date: string
  quick: boolean
  machine: { cpus: number, model?: string, node: string }
  seconds: number
  /** Steal over the whole run, when measured. */
  steal?: number
  rows: Row[]
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

/** The results as markdown for README.md: a line on the run, then one table of every row. */
export function renderMarkdown (results: Results): string {
  const { date, quick, machine, seconds, rows } = results
  const steal = finite(results.steal)
  const lines = [
    `${quick ? 'Quick' : 'Full'} run of ${String(date).slice(0, 10)}, ${formatFigure(seconds)} s, on ${machine.cpus} x ${machine.model ?? 'cpu'}, Node ${machine.node}${steal !== undefined ? `, steal ${(steal * 100).toFixed(1)}% over the run` : ''}.`,
    '',
    '| group | what | figure | range | reference | server CPU | steal | note |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const r of rows) {
    const cpu = finite(r.serverCpu)
    const figure = finite(r.value) === undefined ? '—' : r.unit === 'x' ? `${formatFigure(r.value)}x` : `${formatFigure(r.value)} ${r.unit ?? ''}`.trim()
    const steal = stealText(r)
    const warned = stealWarning(r) !== undefined ? ' (past 10%)' : ''
    lines.push(`| ${cell(r.group)} | ${cell(r.what)} | ${figure} | ${rangeText(r)} | ${cell(ratioText(r))} | ${cpu !== undefined ? `${cpu.toFixed(2)} s` : ''} | ${steal}${warned} | ${cell(r.note ?? '')} |`)
  }
  return lines.join('\n') + '\n'
}

/** The median of `xs` (NaN for none). */
export function median (xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}
