import { describe, expect, it } from 'vitest';
import { encodeFrame } from '../../../../src/wire/phoenix/frame.js';
import { encodeGatewayMessage } from '../../../../src/wire/portal/encode.js';
import type { GatewayMessage } from '../../../../src/wire/portal/types.js';

/** The whole frame as the reference gateway writes it (`spec/portal-protocol.md` §3). */
function frame(m: GatewayMessage, ref: number): string {
  const { event, payload } = encodeGatewayMessage(m);
  return encodeFrame({ topic: 'gateway', event, payload, ref });
}

describe('gateway → portal payloads', () => {
  it('writes flow_authorized as §3.1 shows it', () => {
    expect(frame({ event: 'flow_authorized', payload: { ref: '<ref from authorize_flow>' } }, 5)).toBe(
      '{"topic":"gateway","event":"flow_authorized","payload":{"ref":"<ref from authorize_flow>"},"ref":5}',
    );
  });

  it('writes connection_ready with the PascalCase variant, keys in the reference order', () => {
    // Keys deliberately given out of order: the encoder fixes the order.
    const m: GatewayMessage = {
      event: 'connection_ready',
      payload: {
        gateway_payload: {
          ConnectionAccepted: { ice_parameters: { password: 'y0gxb8tualdu3dw8b4o8sn', username: 'qthh' } },
        },
        ref: '<ref from request_connection>',
      },
    };
    expect(frame(m, 6)).toBe(
      '{"topic":"gateway","event":"connection_ready","payload":{"ref":"<ref from request_connection>",' +
        '"gateway_payload":{"ConnectionAccepted":{"ice_parameters":{"username":"qthh","password":"y0gxb8tualdu3dw8b4o8sn"}}}},"ref":6}',
    );
  });

  it.each(['broadcast_ice_candidates', 'broadcast_invalidated_ice_candidates'] as const)(
    'writes %s with client_ids before candidates',
    (event) => {
      const candidates = [
        'candidate:7efffeff3a9c51d2e0b4 1 udp 2130706175 198.51.100.20 51820 typ host',
        'candidate:64fffeffa41c0b9e77d2 1 udp 1694498559 203.0.113.20 51820 typ srflx raddr 198.51.100.20 rport 51820',
      ];
      const m: GatewayMessage = {
        event,
        payload: { candidates, client_ids: ['8e370367-64b2-4e27-83e2-27ce03bcce23'] },
      };
      expect(frame(m, 7)).toBe(
        `{"topic":"gateway","event":"${event}","payload":{"client_ids":["8e370367-64b2-4e27-83e2-27ce03bcce23"],` +
          `"candidates":${JSON.stringify(candidates)}},"ref":7}`,
      );
    },
  );

  it('sends nothing but the wire fields', () => {
    const m = { event: 'flow_authorized', payload: { ref: 'r', secret: 'x' }, extra: 1 } as GatewayMessage;
    expect(encodeGatewayMessage(m)).toEqual({ event: 'flow_authorized', payload: { ref: 'r' } });
  });
});
