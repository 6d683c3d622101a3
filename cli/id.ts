/** `starsock id`: make or show this machine's peer identity. */
import { Command, Option } from 'commander'
import { KEY_TYPES, type KeyType } from '../client/identity.ts'
import { defaultKeyFile, loadOrCreateIdentity } from '../client/identity.node.ts'

/** The key file option shared by every peer command. */
export function keyOption (): Option {
  return new Option('--key <file>', 'identity key file (made with mode 0600 when missing)').env('STARSOCK_KEY').default(defaultKeyFile(), '~/.starsock/key')
}

/** The `id` command; `started` receives the promise of its exit code. */
export function idCommand (started: (run: Promise<number>) => void): Command {
  return new Command('id')
    .description('make or show the identity (prints the peer id)')
    .addOption(keyOption())
    .addOption(new Option('--type <type>', 'key type when making one').choices(KEY_TYPES).default('Ed25519'))
    .option('--json', 'print {peerId, type, keyFile, created}')
    .action((flags: { key: string, type: KeyType, json?: boolean }) => {
      started((async () => {
        const { identity, created } = await loadOrCreateIdentity(flags.key, flags.type)
        if (flags.json === true) {
          process.stdout.write(JSON.stringify({ peerId: identity.peerId, type: identity.type, keyFile: flags.key, created }) + '\n')
        } else {
          if (created) process.stderr.write(`made a new ${identity.type} identity in ${flags.key}\n`)
          process.stdout.write(identity.peerId + '\n')
        }
        return 0
      })())
    })
}
