// pkijs stays at this boundary: its crypto engine is set once, on Node's WebCrypto.
import { webcrypto } from 'node:crypto';
import * as pkijs from 'pkijs';

let engine: pkijs.ICryptoEngine | undefined;

/** The pkijs crypto engine backed by Node's WebCrypto, installed globally on first use. */
export function cryptoEngine(): pkijs.ICryptoEngine {
  if (!engine) {
    engine = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as ConstructorParameters<typeof pkijs.CryptoEngine>[0]['crypto'] });
    pkijs.setEngine('node', engine);
  }
  return engine;
}

export { pkijs };
