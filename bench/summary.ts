/**
 * One table per transfer scenario (`throughput`, `tunnel`) from its rows: a line per path with
 * its MiB/s, ratio and steal, then the CPU seconds and mark-compacts per 64 MiB of each of its
 * processes side by side (from the `<group> cpu` and `<group> gc` rows), and for the tunnel the
 * copies per byte on each side (encrypted and plaintext). Printed at the end of a run and by `bench/to-markdown.ts`.
 */
import { finite, formatFigure as fmt, ratioText, stealText, type Row } from './rows.ts'

const cell = (text: string): string => text.replace(/\|/g, '\\|')

/** `role figure, role figure` from the rows of `group` whose `what` is `<what>: <role>`. */
function perProcess (rows: Row[], group: string, what: string, show: (r: Row) => string): string {
  const prefix = `${what}: `
  return rows.filter((r) => r.group === group && r.what.startsWith(prefix)).map((r) => `${r.what.slice(prefix.length)} ${show(r)}`).join(', ')
}

/** The summary table of `group` as markdown, or '' when the rows have none of it. */
export function renderSummary (rows: Row[], group: string): string {
  const main = rows.filter((r) => r.group === group)
  if (main.length === 0) return ''
  const lines = [
    `| ${group} | MiB/s | reference | steal | CPU s per 64 MiB, by process | mark-compacts per 64 MiB (GC pause) |`,
    '| --- | --- | --- | --- | --- | --- |'
  ]
  for (const r of main) {
    const range = r.range !== undefined && r.range !== null && r.range.runs > 1 ? ` (${fmt(r.range.min)}–${fmt(r.range.max)}, ${r.range.runs} runs)` : ''
    if (r.unit === 'x') {
      // The encryption cost: a ratio of two paths of the same rounds; its note holds the loss against
      // the goal and every process's CPU encrypted / plaintext (`recordCost`).
      const [verdict = '', , cpuPart = ''] = (r.note ?? '').split('; ')
      const figure = finite(r.value) === undefined ? `— ${r.note ?? ''}`.trim() : `${fmt(r.value)}x${range}`
      lines.push(`| ${cell(r.what)} | ${cell(figure)} | ${cell(verdict)} | ${stealText(r)} | ${cell(cpuPart.replace(/^CPU s per 64 MiB /, ''))} | |`)
      continue
    }
    const figure = finite(r.value) === undefined ? `— ${r.note ?? ''}`.trim() : `${fmt(r.value)}${range}`
    const cpu = perProcess(rows, `${group} cpu`, r.what, (c) => fmt(c.value))
    const gc = perProcess(rows, `${group} gc`, r.what, (g) => {
      const pause = /GC pause ([\d.]+ ms)/.exec(g.note ?? '')?.[1]
      return `${fmt(g.value)}${pause !== undefined ? ` (${pause})` : ''}`
    })
    lines.push(`| ${cell(r.what)} | ${cell(figure)} | ${cell(ratioText(r))} | ${stealText(r)} | ${cell(cpu)} | ${cell(gc)} |`)
  }
  // `copies, <side (variant)>, <label>, <whose>` rows: a line per side and variant (encrypted,
  // plaintext), with ours, the dependencies' and the cipher's output.
  const copies = rows.filter((r) => r.group === `${group} copies` && r.unit === 'per byte')
  const sides = new Map<string, { list: string[], row: Row }>()
  for (const r of copies) {
    const parts = r.what.replace(/^copies, /, '').split(', ')
    const side = parts[0] ?? ''
    const entry = sides.get(side) ?? { list: [], row: r }
    entry.list.push(`${parts[parts.length - 1] ?? ''} ${fmt(r.value)}`)
    sides.set(side, entry)
  }
  for (const [side, { list, row }] of sides) lines.push(`| copies per byte, ${cell(side)} | ${cell(list.join(', '))} | | ${stealText(row)} | | |`)
  return lines.join('\n') + '\n'
}
