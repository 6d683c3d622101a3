/** Small helpers for tests that use the client library's connections. */
import type { Connection } from '../../client/connection.ts'

/** Whether two byte arrays are equal. */
export const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0

/** Read everything from `conn` (a connection, or a channel) until its clean end. */
export async function readAll (conn: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for await (const chunk of conn) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/** Echo every chunk back, then half-close. */
export function echo (conn: Connection): void {
  void (async () => {
    for await (const chunk of conn) await conn.write(chunk)
    await conn.closeWrite()
  })().catch(() => {})
}
