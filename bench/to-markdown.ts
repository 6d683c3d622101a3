/** Print `bench/results/latest.json` as markdown for README.md (every row, then the throughput and tunnel summaries): `node --import tsx bench/to-markdown.ts`. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderMarkdown, type Results } from './rows.ts'
import { renderSummary } from './summary.ts'

const file = fileURLToPath(new URL('./results/latest.json', import.meta.url))
const results = JSON.parse(readFileSync(file, 'utf8')) as Results
process.stdout.write(renderMarkdown(results))
for (const group of ['throughput', 'tunnel']) {
  const table = renderSummary(results.rows, group)
  if (table !== '') process.stdout.write(`\n${table}`)
}
