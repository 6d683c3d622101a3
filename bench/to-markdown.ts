/** Print `bench/results/latest.json` as a markdown table for README.md: `node --import tsx bench/to-markdown.ts`. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderMarkdown, type Results } from './rows.ts'

const file = fileURLToPath(new URL('./results/latest.json', import.meta.url))
process.stdout.write(renderMarkdown(JSON.parse(readFileSync(file, 'utf8')) as Results))
