// The bytes every bench server answers on GET /bench: certbound's route answers
// {"sha1": <40 hex>, "binding": <64 hex>} read from the connection; the baselines (bare
// fastify, bare node:https, nginx) answer the same length and content type with fixed values.
export const SAME_LENGTH_BODY = JSON.stringify({ sha1: '0'.repeat(40), binding: '0'.repeat(64) });
export const CONTENT_TYPE = 'application/json; charset=utf-8';
