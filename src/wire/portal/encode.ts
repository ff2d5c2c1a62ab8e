import type { GatewayMessage } from './types.js';

/**
 * The payload of a gateway → portal message (`spec/portal-protocol.md` §3), ready for
 * `encodeFrame`. Objects are rebuilt field by field so that the keys come out in the order the
 * reference serialises them (§3.1–§3.3) and nothing but the wire fields is sent.
 */
export function encodeGatewayMessage(m: GatewayMessage): { event: string; payload: unknown } {
  switch (m.event) {
    case 'flow_authorized':
      return { event: m.event, payload: { ref: m.payload.ref } };
    case 'connection_ready': {
      const ice = m.payload.gateway_payload.ConnectionAccepted.ice_parameters;
      return {
        event: m.event,
        payload: {
          ref: m.payload.ref,
          // An externally tagged enum with its PascalCase variant name (§3.2).
          gateway_payload: {
            ConnectionAccepted: { ice_parameters: { username: ice.username, password: ice.password } },
          },
        },
      };
    }
    case 'broadcast_ice_candidates':
    case 'broadcast_invalidated_ice_candidates':
      return {
        event: m.event,
        payload: { client_ids: [...m.payload.client_ids], candidates: [...m.payload.candidates] },
      };
  }
}
