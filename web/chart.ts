/** A live chart of bytes per second in and out, on a canvas, one sample a second for a minute. */
import { formatBytes } from './dom.ts'

const SAMPLES = 60

/** Draws the last minute of throughput. */
export class ThroughputChart {
  private readonly rates: Array<{ in: number, out: number }> = []
  private last: { at: number, in: number, out: number } | undefined

  constructor (private readonly canvas: HTMLCanvasElement, private readonly label: HTMLElement) {}

  /** Take the byte totals now; draws the rate since the last sample. */
  sample (bytesIn: number, bytesOut: number): void {
    const now = performance.now()
    if (this.last !== undefined) {
      const seconds = Math.max(0.001, (now - this.last.at) / 1000)
      this.rates.push({ in: Math.max(0, bytesIn - this.last.in) / seconds, out: Math.max(0, bytesOut - this.last.out) / seconds })
      if (this.rates.length > SAMPLES) this.rates.shift()
    }
    this.last = { at: now, in: bytesIn, out: bytesOut }
    this.draw()
  }

  private draw (): void {
    const ctx = this.canvas.getContext('2d')
    const now = this.rates.at(-1) ?? { in: 0, out: 0 }
    this.label.textContent = `in ${formatBytes(now.in)}/s · out ${formatBytes(now.out)}/s`
    if (ctx === null) return
    const { width, height } = this.canvas
    ctx.clearRect(0, 0, width, height)
    const top = Math.max(1024, ...this.rates.map((r) => Math.max(r.in, r.out)))
    const line = (key: 'in' | 'out', color: string): void => {
      ctx.strokeStyle = color
      ctx.lineWidth = 2
      ctx.beginPath()
      this.rates.forEach((r, i) => {
        const x = (i / (SAMPLES - 1)) * width
        const y = height - (r[key] / top) * (height - 16)
        if (i === 0) ctx.moveTo(x, y)
        else ctx.lineTo(x, y)
      })
      ctx.stroke()
    }
    line('in', '#1a7f37')
    line('out', '#0969da')
    ctx.fillStyle = '#555'
    ctx.font = '12px system-ui, sans-serif'
    ctx.fillText(`${formatBytes(top)}/s`, 4, 12)
  }
}
