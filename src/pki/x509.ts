// The one place @peculiar/x509 is loaded, so it is always ready whichever module imports it first:
// it resolves its algorithms through tsyringe, which throws at load time unless the Reflect metadata
// API is already installed; and it needs a WebCrypto provider, for which Node's own serves (no addon).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export { x509 };
