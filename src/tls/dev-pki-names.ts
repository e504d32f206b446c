// Names of the dev PKI that the CLI prints before (or without) creating one: on their own so that
// `certbound serve --cert …` loads no certificate builder.
/** Where `certbound serve` keeps its OCSP responses inside the dev PKI directory. */
export const DEV_OCSP_CACHE_DIR = 'ocsp-cache';

/**
 * The password of client.p12: fixed and printed in the banner, because its job is to be typed
 * into a browser's import dialog. It protects nothing (client.key sits next to it); the file is
 * 0600 like every key.
 */
export const DEV_CLIENT_P12_PASSWORD = 'certbound';
