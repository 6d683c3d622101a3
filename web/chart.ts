/**
 * The throughput chart: bytes per second in and out over the last two minutes, drawn by uPlot
 * (a time axis, a rate axis in B/s, KiB/s, MiB/s, a legend), one point per sample of the byte
 * totals. Each point is the mean rate over the interval since the one before, so the points
 * integrate to the bytes that moved; the series is also on the element (`data-series`) for tests
 * and tools, as are the axes' labels (`data-time-ticks`, wall-clock `HH:MM:SS`; `data-rate-ticks`),
 * and summed up in words for screen readers.
 */
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { formatBytes } from './dom.ts'

/** How much history the chart keeps. */
export const CHART_HISTORY_MS = 120_000
const CHART_HEIGHT_PX = 180
const KIB = 1024

/** `1.5 MiB/s`. */
export function formatRate (bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`
}

/**
 * Tick steps of the rate axis: 1, 2, 4 ... 512 of B, KiB, MiB and GiB per second, so ticks fall
 * on round binary figures (256 KiB/s, 1 MiB/s) rather than 500000 B/s.
 */
const RATE_INCREMENTS = [0, 1, 2, 3].flatMap((power) => [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((n) => n * KIB ** power))

/**
 * Tick steps of the time axis, in seconds: whole seconds and up, as its labels say no more than
 * the second (uPlot's own steps go down to milliseconds: `:54.000 :54.500` on a short window).
 */
const TIME_INCREMENTS_S = [1, 2, 5, 10, 15, 30, 60, 120]

/** Wall-clock `HH:MM:SS` (24-hour, local time) of `seconds` since the epoch. */
export function formatClock (seconds: number): string {
  const d = new Date(seconds * 1000)
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':')
}

/** One sample: when (ms since the epoch) and the mean rates since the sample before (`null`: no rate, a baseline). */
export interface RatePoint {
  at: number
  in: number | null
  out: number | null
}

/** The series as put on the element: times in ms since the epoch, rates in bytes per second. */
export interface ChartSeries {
  at: number[]
  in: Array<number | null>
  out: Array<number | null>
}

/** Draws the rates it is given into `target`, and says the latest in `summary`. */
export class ThroughputChart {
  private readonly points: RatePoint[] = []
  private readonly plot: uPlot

  constructor (private readonly target: HTMLElement, private readonly summary: HTMLElement) {
    // The legend says the point under the pointer, else the latest one (not uPlot's `--`).
    const shown = (u: uPlot, series: number, idx: number | null | undefined): number | null | undefined => u.data[series]?.[idx ?? u.data[0].length - 1]
    const rate = (u: uPlot, _v: number | null, series: number, idx: number | null): string => {
      const v = shown(u, series, idx)
      return v === null || v === undefined ? '–' : formatRate(v)
    }
    const clock = (u: uPlot, _v: number | null, _series: number, idx: number | null): string => {
      const at = shown(u, 0, idx)
      return at === null || at === undefined ? '–' : formatClock(at)
    }
    // The page's colours (light or dark), as uPlot draws its axes on the canvas.
    const css = getComputedStyle(document.documentElement)
    const ink = css.getPropertyValue('--fg').trim() || '#1f2328'
    const grid = { stroke: css.getPropertyValue('--line').trim() || '#d1d9e0', width: 1 }
    this.plot = new uPlot({
      width: this.widthNow(),
      height: CHART_HEIGHT_PX,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(KIB, max * 1.1)] } },
      axes: [
        { stroke: ink, grid, ticks: grid, values: (_u, splits) => this.timeTicks(splits), incrs: TIME_INCREMENTS_S, space: 70 },
        { stroke: ink, grid, ticks: grid, values: (_u, splits) => this.rateTicks(splits), incrs: RATE_INCREMENTS, size: 90 }
      ],
      series: [
        { label: 'time', value: clock },
        { label: 'in', stroke: '#1a7f37', width: 2, value: rate, spanGaps: false },
        { label: 'out', stroke: '#0969da', width: 2, value: rate, spanGaps: false }
      ],
      legend: { live: true }
    }, [[], [], []], target)
    new ResizeObserver(() => { this.plot.setSize({ width: this.widthNow(), height: CHART_HEIGHT_PX }) }).observe(target)
  }

  /** Add a sample and draw; points older than `CHART_HISTORY_MS` leave. */
  add (point: RatePoint): void {
    this.points.push(point)
    while (this.points.length > 0 && (this.points[0] as RatePoint).at < point.at - CHART_HISTORY_MS) this.points.shift()
    const series: ChartSeries = { at: this.points.map((p) => p.at), in: this.points.map((p) => p.in), out: this.points.map((p) => p.out) }
    this.plot.setData([series.at.map((ms) => ms / 1000), series.in, series.out])
    this.target.dataset.series = JSON.stringify(series)
    if (point.in !== null && point.out !== null) {
      const peak = Math.max(0, ...this.points.map((p) => Math.max(p.in ?? 0, p.out ?? 0)))
      this.summary.textContent = `Now: in ${formatRate(point.in)}, out ${formatRate(point.out)}. Highest in the last two minutes: ${formatRate(peak)}.`
    }
  }

  /** The rate axis' tick labels; also on the element (`data-rate-ticks`), as the axis is drawn, not text. */
  private rateTicks (splits: number[]): string[] {
    // Ticks fall on round binary figures: `512 KiB/s`, not `512.0 KiB/s`.
    const labels = splits.map((v) => formatRate(v).replace('.0 ', ' '))
    this.target.dataset.rateTicks = labels.join(', ')
    return labels
  }

  /** The time axis' tick labels (`HH:MM:SS`); also on the element (`data-time-ticks`). */
  private timeTicks (splits: number[]): string[] {
    const labels = splits.map(formatClock)
    this.target.dataset.timeTicks = labels.join(', ')
    return labels
  }

  /** The plot's width: the element's, less nothing (uPlot draws its axes inside it). */
  private widthNow (): number {
    return Math.max(240, Math.floor(this.target.clientWidth))
  }
}
