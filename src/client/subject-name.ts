// Subject names as BITS's SetClientCertificateByName and GetClientCertificate use them: the
// "simple subject name" lists the RDN values without attribute types, in the reverse of the
// order a certificate displays (CN=a, OU=b, O=c is named "c, b, a"), i.e. in DER order.
// Read with pkijs; no DER by hand.
import * as asn1js from 'asn1js';
import { pkijs } from '../tls/pkijs-engine.js';

const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.42': 'GN',
  '1.2.840.113549.1.9.1': 'E',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
};

/** One attribute of a subject, in DER order. */
export interface NameAttribute {
  readonly type: string;
  readonly value: string;
}

/** The subject attributes of a DER certificate, in the order they are encoded. */
export function subjectAttributes(der: Uint8Array): NameAttribute[] {
  const cert = pkijs.Certificate.fromBER(der);
  return cert.subject.typesAndValues.map((tv) => ({
    type: SHORT_NAMES[tv.type] ?? tv.type,
    value: attributeText(tv.value),
  }));
}

function attributeText(value: unknown): string {
  // Directory strings are asn1js string types; anything else is shown as hex, as RFC 4514 does.
  if (value && typeof value === 'object' && 'valueBlock' in value) {
    const block = (value as { valueBlock: { value?: unknown } }).valueBlock;
    if (typeof block.value === 'string') return block.value;
  }
  if (value instanceof asn1js.BaseBlock) return '#' + Buffer.from(value.toBER(false)).toString('hex');
  return String(value);
}

/** BITS's simple subject name: values in DER order, comma-separated ("certbound dev, users, dev-client"). */
export function simpleSubjectName(attrs: readonly NameAttribute[]): string {
  return attrs.map((a) => a.value).join(', ');
}

/** The name as certificates display it, most specific first ("CN=dev-client, OU=users, O=certbound dev"). */
export function displaySubjectName(attrs: readonly NameAttribute[]): string {
  return [...attrs].reverse().map((a) => `${a.type}=${a.value}`).join(', ');
}

/**
 * Whether a SetClientCertificateByName query names this subject. BITS (through
 * CertFindCertificateInStore's subject-string search) matches a substring of the simple name,
 * case-insensitively; the query may list one or more adjacent RDN values, comma-separated.
 * Spaces around the commas are not significant.
 */
export function subjectMatches(simpleName: string, query: string): boolean {
  const norm = (s: string) => s.split(',').map((p) => p.trim()).join(',').toLowerCase();
  const q = norm(query);
  return q.length > 0 && norm(simpleName).includes(q);
}
