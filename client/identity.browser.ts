/** Identity persisted in IndexedDB in the browser. */
import { createIdentity, identityFromBytes, identityToBytes, type Identity, type KeyType } from './identity.ts'

const STORE = 'keys'

function openDb (name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1)
    req.onupgradeneeded = () => { req.result.createObjectStore(STORE) }
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'))
  })
}

function run<T> (db: IDBDatabase, mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = fn(db.transaction(STORE, mode).objectStore(STORE))
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'))
  })
}

/** Load the identity saved under `slot` in database `dbName`, or make and save one. */
export async function loadOrCreateBrowserIdentity (slot = 'default', type: KeyType = 'Ed25519', dbName = 'starsock'): Promise<{ identity: Identity, created: boolean }> {
  const db = await openDb(dbName)
  try {
    const stored = await run<unknown>(db, 'readonly', (s) => s.get(slot))
    if (stored instanceof Uint8Array || stored instanceof ArrayBuffer) {
      return { identity: identityFromBytes(new Uint8Array(stored)), created: false }
    }
    const identity = await createIdentity(type)
    await run(db, 'readwrite', (s) => s.put(identityToBytes(identity), slot))
    return { identity, created: true }
  } finally {
    db.close()
  }
}

/** Replace the identity under `slot` with a new one. */
export async function replaceBrowserIdentity (slot = 'default', type: KeyType = 'Ed25519', dbName = 'starsock'): Promise<Identity> {
  const db = await openDb(dbName)
  try {
    const identity = await createIdentity(type)
    await run(db, 'readwrite', (s) => s.put(identityToBytes(identity), slot))
    return identity
  } finally {
    db.close()
  }
}
