/** Identity persisted in a key file (mode 0600) in Node. */
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { createIdentity, identityFromBytes, identityToBytes, type Identity, type KeyType } from './identity.ts'
import { readSmallFile, SmallFileError } from './read-small-file.node.ts'

/** Largest key file read: a key is at most a few KiB (an RSA key of 8192 bits about 4.7 KiB). */
export const MAX_KEY_FILE_BYTES = 64 * 1024

/** Where the key lives unless told otherwise. */
export function defaultKeyFile (): string {
  return join(homedir(), '.starsock', 'key')
}

/** Load the identity in `file`; `undefined` when the file does not exist. Throws when it is not a key. */
export async function loadIdentity (file: string): Promise<Identity | undefined> {
  let bytes: Buffer
  try {
    bytes = readSmallFile(file, MAX_KEY_FILE_BYTES)
  } catch (err) {
    if (err instanceof SmallFileError) throw new TypeError(`${err.message}: not a key file`, { cause: err })
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new Error(`${file}: cannot read it: ${code ?? (err as Error).message}`, { cause: err })
  }
  try {
    return identityFromBytes(bytes)
  } catch (err) {
    throw new TypeError(`${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** Write `identity` to `file` with mode 0600 (creating its folder with 0700). */
export async function saveIdentity (file: string, identity: Identity): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  await writeFile(file, identityToBytes(identity), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
}

/** Load the identity in `file`, or make one of `type` and save it; `created` says which. */
export async function loadOrCreateIdentity (file: string, type: KeyType = 'Ed25519'): Promise<{ identity: Identity, created: boolean }> {
  const existing = await loadIdentity(file)
  if (existing !== undefined) return { identity: existing, created: false }
  const identity = await createIdentity(type)
  await saveIdentity(file, identity)
  return { identity, created: true }
}

/** The permission bits of `file`. */
export async function fileMode (file: string): Promise<number> {
  return (await stat(file)).mode & 0o777
}
