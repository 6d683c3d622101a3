/** A `Connection` as a Node `Duplex` stream (Node only). */
import { Duplex } from 'node:stream'
import type { Connection } from './connection.ts'

/** Wrap `conn` in a Duplex: `end()` half-closes, `destroy(err)` aborts, `destroy()` closes. */
export function toDuplex (conn: Connection): Duplex {
  return new Duplex({
    read () {
      conn.read().then((chunk) => { this.push(chunk === null ? null : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)) }, (err: Error) => this.destroy(err))
    },
    write (chunk: Buffer, _encoding, callback) {
      conn.write(chunk).then(() => callback(), callback)
    },
    final (callback) {
      conn.closeWrite().then(() => callback(), callback)
    },
    destroy (err, callback) {
      if (err !== null) conn.abort(err)
      else if (!conn.closed) void conn.close()
      callback(err)
    }
  })
}
