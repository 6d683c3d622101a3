import { describe, expect, it } from 'vitest'
import { renderChart } from '../../bench/chart.ts'
import { renderSummary } from '../../bench/summary.ts'
import { formatFigure, formatLine, median, ratioText, renderMarkdown, stealWarning, type Results, type Row } from '../../bench/rows.ts'

/** Rows as a results file holds them: NaN and undefined become null or vanish through JSON. */
const throughJson = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T

const rows: Row[] = [
  { scenario: 'tunnel', group: 'tunnel', what: 'raw ws relay, 1 connection', value: 221.4, unit: 'MiB/s', range: { min: 200, max: 250, runs: 3 }, steal: 0.02 },
  { scenario: 'tunnel', group: 'tunnel', what: 'forward, 1 connection', value: NaN, unit: 'MiB/s', reference: { what: 'raw ws', value: 221.4 }, steal: 0.25, note: 'could not measure: the sink got 3 of 8 bytes' },
  { scenario: 'tunnel', group: 'tunnel', what: 'websockify, 1 connection', value: 177, unit: 'MiB/s', reference: { what: 'raw ws', value: NaN }, serverCpu: NaN },
  { scenario: 'tunnel', group: 'tunnel', what: 'forward, 8 connections', value: 80, unit: 'MiB/s', reference: { what: 'raw ws', value: 0 } },
  { scenario: 'dial', group: 'dial', what: 'scenario', value: NaN, unit: '', note: 'could not measure: worker exited' },
  { group: 'tunnel gc', what: 'forward: server', value: Infinity, unit: 'MC/64 MiB' }
]

describe('bench row renderers with missing figures', () => {
  it.each([[NaN, '—'], [null, '—'], [undefined, '—'], [Infinity, '—'], [3, '3'], [221.4, '221'], [12.345, '12.3'], [0.126, '0.13']])('formatFigure(%s) is %s', (n, text) => {
    expect(formatFigure(n)).toBe(text)
  })

  it('prints every row as a line without NaN, before and after JSON', () => {
    for (const r of [...rows, ...throughJson(rows)]) {
      const line = formatLine(r)
      expect(line, r.what).not.toMatch(/NaN|null|undefined|Infinity/)
      expect(line).toContain(r.what)
    }
    expect(formatLine(rows[1] as Row)).toContain('—')
    expect(formatLine(rows[1] as Row)).toContain('could not measure: the sink got 3 of 8 bytes')
    expect(formatLine(rows[0] as Row)).toContain('median of 3 (200–250)')
  })

  it('gives a ratio only when both figures are there and the reference is not 0', () => {
    expect(ratioText(rows[0] as Row)).toBe('')
    expect(ratioText(rows[1] as Row)).toBe('')
    expect(ratioText(rows[2] as Row)).toBe('')
    expect(ratioText(rows[3] as Row)).toBe('')
    expect(ratioText(throughJson(rows[2] as Row))).toBe('')
    expect(ratioText({ group: 'g', what: 'w', value: 110.7, unit: 'MiB/s', reference: { what: 'raw ws', value: 221.4 } })).toBe('0.50x raw ws (221)')
  })

  it('writes the markdown table from a results file with null figures', () => {
    const results: Results = throughJson({ date: '2026-12-01T22:25:41.359Z', quick: true, machine: { cpus: 2, model: 'AMD EPYC', node: 'v20.20.2' }, seconds: NaN, steal: NaN, rows })
    const md = renderMarkdown(results)
    expect(md).not.toMatch(/NaN|null|undefined|Infinity/)
    const lines = md.trim().split('\n')
    expect(lines).toHaveLength(4 + rows.length) // a row that could not be measured is there, saying why
    expect(md).toContain('| tunnel | forward, 1 connection | — |')
    expect(md).toContain('could not measure: worker exited')
    expect(md).toContain('25.0% (past 10%)')
    for (const line of lines.slice(2)) expect(line.split(/(?<!\\)\|/)).toHaveLength(10)
  })

  it('draws the chart from rows with null and NaN figures', () => {
    for (const list of [rows, throughJson(rows)]) {
      const svg = renderChart(list)
      expect(svg).not.toMatch(/NaN|null|undefined|Infinity/)
      expect(svg.match(/not measured/g)).toHaveLength(3)
      expect(svg.match(/<rect x=/g)).toHaveLength(3) // the three rows with a figure
    }
  })

  it('draws a group that mixes units (MiB/s and the encryption cost\'s ratio) as one panel per unit', () => {
    const mixed: Row[] = [
      { group: 'tunnel', what: 'forward, encrypted (default), 1 connection', value: 200, unit: 'MiB/s' },
      { group: 'tunnel', what: 'forward, plaintext (--insecure), 1 connection', value: 240, unit: 'MiB/s' },
      { group: 'tunnel', what: 'encryption cost (encrypted / plaintext), forward, 1 connection', value: 0.83, unit: 'x' },
      { group: 'tunnel', what: 'encryption cost (encrypted / plaintext), forward, 8 connections', value: NaN, unit: 'x' }
    ]
    const svg = renderChart(mixed)
    expect(svg).toContain('>tunnel (MiB/s)</text>')
    expect(svg).toContain('>tunnel (x)</text>')
    expect(svg).toContain('>tunnel</text>') // the row without a figure
    // The ratio's bar fills its own panel's width instead of a sliver beside 240 MiB/s.
    const widths = [...svg.matchAll(/<rect x="\d+" y="\d+" width="([\d.]+)"/g)].map((m) => Number(m[1]))
    expect(widths).toHaveLength(3)
    expect(widths[2]).toBe(widths[1])
  })

  it('warns past 10% steal only', () => {
    const at = (steal: number | undefined): string | undefined => stealWarning({ group: 'g', what: 'w', value: 1, unit: 'x', steal })
    expect(at(0.25)).toMatch(/^WARNING: steal 25\.0% during "w"/)
    expect(at(0.1001)).toBeDefined()
    expect(at(0.10)).toBeUndefined()
    expect(at(0)).toBeUndefined()
    expect(at(NaN)).toBeUndefined()
    expect(at(undefined)).toBeUndefined()
    expect(stealWarning(throughJson({ group: 'g', what: 'w', value: 1, unit: 'x', steal: NaN }))).toBeUndefined()
  })

  it('takes the median of the figures there are', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(median([5, NaN, 1])).toBe(3)
    expect(median([])).toBeNaN()
  })
})

describe('bench summary table', () => {
  const label = 'forward, 1 connection, 16 MiB'
  const summaryRows: Row[] = [
    { group: 'tunnel', what: 'raw ws relay, 1 connection, 16 MiB', value: 128, unit: 'MiB/s', range: { min: 96.9, max: 252, runs: 3 }, steal: 0 },
    { group: 'tunnel', what: label, value: 8.68, unit: 'MiB/s', reference: { what: 'raw ws', value: 128 }, steal: 0.003 },
    { group: 'tunnel', what: 'websockify, 1 connection, 16 MiB', value: NaN, unit: 'MiB/s', reference: { what: 'raw ws', value: 128 }, note: 'could not measure: websockify closed' },
    { group: 'tunnel cpu', what: `${label}: server`, value: 0.96, unit: 's/64 MiB' },
    { group: 'tunnel cpu', what: `${label}: target peer`, value: NaN, unit: 's/64 MiB' },
    { group: 'tunnel gc', what: `${label}: server`, value: 12, unit: 'MC/64 MiB', note: 'mark-compacts per 64 MiB; GC pause 704 ms (mark-compact 584 ms), 0 scavenges per 64 MiB' },
    { group: 'tunnel gc', what: `${label}: target peer`, value: NaN, unit: 'MC/64 MiB', note: 'no GC figures' },
    { group: 'tunnel', what: 'encryption cost (encrypted / plaintext), forward, 1 connection, 16 MiB', value: 0.9, unit: 'x', range: { min: 0.8, max: 0.95, runs: 3 }, steal: 0.01, note: 'loss 10.0% (goal: at most 15%: goal met); ratio of the medians 0.80 (80.0 / 100 MiB/s); CPU s per 64 MiB encrypted / plaintext: server 0.20 / 0.20, forwarding peer 0.60 / 0.40' },
    { group: 'tunnel', what: 'encryption cost (encrypted / plaintext), forward, 8 connections, 16 MiB', value: NaN, unit: 'x', note: 'no figure: a path was not measured' },
    { group: 'tunnel copies', what: 'copies, forwarding peer (encrypted: sealing), 1 connection, 16 MiB, starsock code', value: 1, unit: 'per byte', steal: NaN },
    { group: 'tunnel copies', what: 'copies, forwarding peer (encrypted: sealing), 1 connection, 16 MiB, dependencies', value: NaN, unit: 'per byte' },
    { group: 'tunnel copies', what: 'copies, forwarding peer (encrypted: sealing), 1 connection, 16 MiB, cipher output', value: 1, unit: 'per byte' },
    { group: 'tunnel copies', what: 'copies, forwarding peer (plaintext: --insecure), 1 connection, 16 MiB, starsock code', value: 1, unit: 'per byte' },
    { group: 'tunnel copies', what: 'copies, target peer (encrypted: opening), 1 connection, 16 MiB, dependencies', value: 0.96, unit: 'per byte' }
  ]

  it('puts each path with its processes\' CPU and GC on one line, missing figures as dashes', () => {
    for (const list of [summaryRows, throughJson(summaryRows)]) {
      const md = renderSummary(list, 'tunnel')
      expect(md).not.toMatch(/NaN|null|undefined|Infinity/)
      expect(md).toContain(`| ${label} | 8.68 | 0.07x raw ws (128) | 0.3% | server 0.96, target peer — | server 12 (704 ms), target peer — |`)
      expect(md).toContain('| websockify, 1 connection, 16 MiB | — could not measure: websockify closed |')
      expect(md).toContain('| raw ws relay, 1 connection, 16 MiB | 128 (96.9–252, 3 runs) |')
      expect(md).toContain('| copies per byte, forwarding peer (encrypted: sealing) | starsock code 1, dependencies —, cipher output 1 |')
      expect(md).toContain('| copies per byte, forwarding peer (plaintext: --insecure) | starsock code 1 |')
      expect(md).toContain('| copies per byte, target peer (encrypted: opening) | dependencies 0.96 |')
      expect(md).toContain('| encryption cost (encrypted / plaintext), forward, 1 connection, 16 MiB | 0.90x (0.80–0.95, 3 runs) | loss 10.0% (goal: at most 15%: goal met) | 1.0% | encrypted / plaintext: server 0.20 / 0.20, forwarding peer 0.60 / 0.40 | |')
      expect(md).toContain('| encryption cost (encrypted / plaintext), forward, 8 connections, 16 MiB | — no figure: a path was not measured |')
    }
    expect(renderSummary(summaryRows, 'throughput')).toBe('')
  })
})
