/**
 * STUN (RFC 8489), TURN (RFC 8656) and ICE (RFC 8445) numbers as they appear on the gateway's
 * tunnel socket (`spec/snownet.md` §3.3).
 */

export const STUN_MAGIC_COOKIE = 0x2112a442;
export const STUN_HEADER_BYTES = 20;
export const TRANSACTION_ID_BYTES = 12;
/** FINGERPRINT is the CRC-32 of the message XOR this (RFC 8489 §14.7). */
export const FINGERPRINT_XOR = 0x5354554e;

// Methods.
export const METHOD_BINDING = 0x001;
export const METHOD_ALLOCATE = 0x003;
export const METHOD_REFRESH = 0x004;
export const METHOD_SEND = 0x006;
export const METHOD_DATA = 0x007;
export const METHOD_CREATE_PERMISSION = 0x008;
export const METHOD_CHANNEL_BIND = 0x009;

// Classes.
export const CLASS_REQUEST = 0;
export const CLASS_INDICATION = 1;
export const CLASS_SUCCESS = 2;
export const CLASS_ERROR = 3;
export type StunClass =
  | typeof CLASS_REQUEST
  | typeof CLASS_INDICATION
  | typeof CLASS_SUCCESS
  | typeof CLASS_ERROR;

// Attributes. 0x0000–0x7FFF are comprehension-required, 0x8000–0xFFFF comprehension-optional.
export const ATTR_MAPPED_ADDRESS = 0x0001;
export const ATTR_USERNAME = 0x0006;
export const ATTR_MESSAGE_INTEGRITY = 0x0008;
export const ATTR_ERROR_CODE = 0x0009;
export const ATTR_UNKNOWN_ATTRIBUTES = 0x000a;
export const ATTR_CHANNEL_NUMBER = 0x000c;
export const ATTR_LIFETIME = 0x000d;
export const ATTR_XOR_PEER_ADDRESS = 0x0012;
export const ATTR_DATA = 0x0013;
export const ATTR_REALM = 0x0014;
export const ATTR_NONCE = 0x0015;
export const ATTR_XOR_RELAYED_ADDRESS = 0x0016;
export const ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017;
export const ATTR_EVEN_PORT = 0x0018;
export const ATTR_REQUESTED_TRANSPORT = 0x0019;
export const ATTR_DONT_FRAGMENT = 0x001a;
export const ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001c;
export const ATTR_PASSWORD_ALGORITHM = 0x001d;
export const ATTR_USERHASH = 0x001e;
export const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
export const ATTR_RESERVATION_TOKEN = 0x0022;
export const ATTR_PRIORITY = 0x0024;
export const ATTR_USE_CANDIDATE = 0x0025;
export const ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000;
export const ATTR_ADDRESS_ERROR_CODE = 0x8001;
export const ATTR_PASSWORD_ALGORITHMS = 0x8002;
export const ATTR_ALTERNATE_DOMAIN = 0x8003;
export const ATTR_ICMP = 0x8004;
export const ATTR_SOFTWARE = 0x8022;
export const ATTR_ALTERNATE_SERVER = 0x8023;
export const ATTR_FINGERPRINT = 0x8028;
export const ATTR_ICE_CONTROLLED = 0x8029;
export const ATTR_ICE_CONTROLLING = 0x802a;
export const ATTR_RESPONSE_ORIGIN = 0x802b;
export const ATTR_OTHER_ADDRESS = 0x802c;

/** Address families of the (XOR-)address attributes and of (ADDITIONAL-/REQUESTED-)ADDRESS-FAMILY. */
export const FAMILY_IPV4 = 0x01;
export const FAMILY_IPV6 = 0x02;

/** REQUESTED-TRANSPORT value for UDP. */
export const TRANSPORT_UDP = 17;

/** TURN channel numbers (RFC 8656 §12); Firezone uses 0x4000–0x4FFF only (snownet §3.5). */
export const CHANNEL_MIN = 0x4000;
export const CHANNEL_MAX = 0x4fff;
export const CHANNEL_DATA_HEADER_BYTES = 4;

/** Error codes the gateway reacts to (RFC 8489 §14.8, RFC 8656 §19). */
export const ERROR_BAD_REQUEST = 400;
export const ERROR_UNAUTHORIZED = 401;
export const ERROR_UNKNOWN_ATTRIBUTE = 420;
export const ERROR_ALLOCATION_MISMATCH = 437;
export const ERROR_STALE_NONCE = 438;
export const ERROR_ADDRESS_FAMILY_NOT_SUPPORTED = 440;
export const ERROR_WRONG_CREDENTIALS = 441;
export const ERROR_UNSUPPORTED_TRANSPORT = 442;
export const ERROR_PEER_ADDRESS_FAMILY_MISMATCH = 443;
export const ERROR_ALLOCATION_QUOTA_REACHED = 486;
export const ERROR_ROLE_CONFLICT = 487;
export const ERROR_SERVER_ERROR = 500;
export const ERROR_INSUFFICIENT_CAPACITY = 508;

/** Printable name of a method, for logs. */
export function methodName(method: number): string {
  switch (method) {
    case METHOD_BINDING:
      return 'BINDING';
    case METHOD_ALLOCATE:
      return 'ALLOCATE';
    case METHOD_REFRESH:
      return 'REFRESH';
    case METHOD_SEND:
      return 'SEND';
    case METHOD_DATA:
      return 'DATA';
    case METHOD_CREATE_PERMISSION:
      return 'CREATE-PERMISSION';
    case METHOD_CHANNEL_BIND:
      return 'CHANNEL-BIND';
    default:
      return `0x${method.toString(16).padStart(3, '0')}`;
  }
}
