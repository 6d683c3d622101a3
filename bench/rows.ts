/** The rows a benchmark run records, and how a figure is printed; shared by the harness and the modules it runs. */

/** One measured figure, with its reference when there is one. */
export interface Row {
  /** The scenario that measured it (`--only` re-runs whole scenarios). */
  scenario?: string
  group: string
  what: string
  value: number
  unit: string
  reference?: { what: string, value: number }
  /** Server CPU seconds spent during the measurement. */
  serverCpu?: number
  note?: string
}

/** A figure with as many decimals as its size deserves (none for integers and from 100 up). */
export function formatFigure (n: number): string {
  return Number.isInteger(n) ? String(n) : n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
}
