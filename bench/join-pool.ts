/**
 * Joins `count` clients with `inFlight` joins at a time (the announce benches' client workers):
 * `joinOne(i)` joins client `i`; a refusal counts as failed, never stops the others.
 */
export async function joinAll (count: number, inFlight: number, joinOne: (i: number) => Promise<void>): Promise<{ joined: number, failed: number }> {
  let next = 0
  let joined = 0
  let failed = 0
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < count) {
      const i = next++
      try {
        await joinOne(i)
        joined++
      } catch {
        failed++
      }
    }
  }))
  return { joined, failed }
}
