/** Print `bench/results/latest.json` as markdown for README.md (every row, then the throughput and tunnel summaries): `node --conditions=starsock-source --import tsx bench/to-markdown.ts`. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderMarkdown, type Results } from './rows.ts'
import { renderSummary } from './summary.ts'

const file = fileURLToPath(new URL('./results/latest.json', import.meta.url))
const results = JSON.parse(readFileSync(file, 'utf8')) as Results
const summaries = ['throughput', 'tunnel'].map((group) => renderSummary(results.rows, group)).filter((t) => t !== '')
process.stdout.write([renderMarkdown(results), ...summaries].join('\n'))
