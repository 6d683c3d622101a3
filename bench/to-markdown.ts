/** Print `bench/results/latest.json` as a markdown table for README.md: `node --import tsx bench/to-markdown.ts`. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { formatFigure, type Row } from './rows.ts'

const file = fileURLToPath(new URL('./results/latest.json', import.meta.url))
const { date, quick, machine, seconds, rows } = JSON.parse(readFileSync(file, 'utf8')) as { date: string, quick: boolean, machine: { cpus: number, model: string, node: string }, seconds: number, rows: Row[] }

// NaN (a figure that could not be measured) is written to JSON as null.
const fmt = (n: number | null): string => n === null || Number.isNaN(n) ? '—' : formatFigure(n)
const cell = (text: string): string => text.replace(/\|/g, '\\|')

console.log(`${quick ? 'Quick' : 'Full'} run of ${date.slice(0, 10)}, ${fmt(seconds)} s, on ${machine.cpus} x ${machine.model}, Node ${machine.node}.\n`)
console.log('| group | what | figure | reference | server CPU | note |')
console.log('| --- | --- | --- | --- | --- | --- |')
for (const r of rows) {
  if (r.what === 'scenario' && (r.value === null || Number.isNaN(r.value))) continue
  const ref = r.reference !== undefined && Number.isFinite(r.reference.value) && Number.isFinite(r.value) ? `${(r.value / r.reference.value).toFixed(2)}x ${r.reference.what} (${fmt(r.reference.value)})` : ''
  const cpu = r.serverCpu !== undefined ? `${r.serverCpu.toFixed(2)} s` : ''
  console.log(`| ${r.group} | ${cell(r.what)} | ${fmt(r.value)} ${r.unit} | ${ref} | ${cpu} | ${cell(r.note ?? '')} |`)
}
