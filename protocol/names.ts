/**
 * Kubernetes' name rules (DNS-1123) and their schemas.
 */
import { s } from './schema.js';

export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDns1123Label(name: string): boolean {
  return DNS1123_LABEL.test(name);
}

/** A dotted-quad IPv4 address ("10.96.0.10"). */
export function isIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

export function isDns1123Subdomain(name: string): boolean {
  return DNS1123_SUBDOMAIN.test(name) && name.split('.').every((l) => l.length <= 63);
}

/** A DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters, alphanumeric at both ends. */
export const labelName = s.string({
  max: 63,
  pattern: DNS1123_LABEL,
  patternName: "a DNS-1123 label (lower-case letters, digits and '-', at most 63, starting and ending alphanumeric)",
});

/** A DNS-1123 subdomain: labels joined by '.', at most 253 characters. */
export const subdomainName = s.string({
  max: 253,
  pattern: DNS1123_SUBDOMAIN,
  patternName: "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253, starting and ending alphanumeric)",
});
