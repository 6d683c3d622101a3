/** An SVG chart of a benchmark run: one panel per group, a horizontal bar per figure. */
import { finite, formatFigure, type Row } from './rows.ts'

const WIDTH = 900
const BAR = 18
const GAP = 6
const LABEL = 430

function esc (text: string): string {
  return String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** The chart for `rows` as SVG text; a row without a figure gets no bar and says "not measured". */
export function renderChart (rows: Row[]): string {
  // One panel per group, and per unit where a group mixes them (a ratio beside MiB/s would get no visible bar).
  const units = (group: string): Set<string> => new Set(rows.filter((r) => r.group === group && finite(r.value) !== undefined).map((r) => r.unit ?? ''))
  const panelOf = (r: Row): string => units(r.group).size > 1 && finite(r.value) !== undefined ? `${r.group} (${r.unit ?? ''})` : r.group
  const groups = [...new Set(rows.map(panelOf))]
  const parts: string[] = []
  let y = 10
  for (const group of groups) {
    const inGroup = rows.filter((r) => panelOf(r) === group)
    const max = Math.max(...inGroup.map((r) => Math.abs(finite(r.value) ?? 0)), 1e-9)
    parts.push(`<text x="10" y="${y + 14}" font-weight="bold">${esc(group)}</text>`)
    y += 24
    for (const r of inGroup) {
      const value = finite(r.value)
      parts.push(`<text x="10" y="${y + 13}" font-size="12">${esc(r.what)}</text>`)
      if (value === undefined) {
        parts.push(`<text x="${LABEL}" y="${y + 13}" font-size="12" fill="#b00">not measured</text>`)
      } else {
        const w = Math.max(1, (Math.abs(value) / max) * (WIDTH - LABEL - 120))
        const ours = /\bours\b|our server|our client|^forward\b/.test(r.what)
        parts.push(`<rect x="${LABEL}" y="${y}" width="${w.toFixed(1)}" height="${BAR}" fill="${ours ? '#2b7bb9' : '#9aa5b1'}"/>`)
        parts.push(`<text x="${(LABEL + w + 6).toFixed(1)}" y="${y + 13}" font-size="12">${esc(`${formatFigure(value)} ${r.unit ?? ''}`)}</text>`)
      }
      y += BAR + GAP
    }
    y += 10
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`
}
