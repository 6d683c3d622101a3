/** JSON lines over a reliable channel: how chat messages and file headers are framed. */
import type { Channel } from './channel.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Longest line accepted (a header or a chat message). */
export const MAX_LINE_BYTES = 64 * 1024

/** Write one JSON value as a line. */
export async function writeLine (channel: Channel, value: unknown): Promise<void> {
  await channel.write(encoder.encode(JSON.stringify(value) + '\n'))
}

/** Reads JSON lines from a channel; bytes after a line stay for `rest()`. */
export class LineReader {
  private buffer = new Uint8Array(0)

  constructor (private readonly channel: Channel) {}

  /** The next line as JSON, or `null` at the end; throws on a line too long or not JSON. */
  async next (): Promise<unknown> {
    for (;;) {
      const nl = this.buffer.indexOf(10)
      if (nl >= 0) {
        const line = this.buffer.subarray(0, nl)
        this.buffer = this.buffer.subarray(nl + 1)
        return JSON.parse(decoder.decode(line))
      }
      if (this.buffer.byteLength > MAX_LINE_BYTES) throw new Error('line too long')
      const chunk = await this.channel.read()
      if (chunk === null) return null
      const joined = new Uint8Array(this.buffer.byteLength + chunk.byteLength)
      joined.set(this.buffer)
      joined.set(chunk, this.buffer.byteLength)
      this.buffer = joined
    }
  }

  /** What was read past the last line. */
  rest (): Uint8Array {
    const rest = this.buffer
    this.buffer = new Uint8Array(0)
    return rest
  }
}
