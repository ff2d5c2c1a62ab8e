import { Counter, Gauge, Registry } from 'prom-client';

/** What the gateway exposes; read on every scrape, so the hot path only bumps plain counters. */
export interface MetricsSource {
  dropCounters(): Record<string, number>;
  traffic(): Record<string, number>;
  clients(): number;
}

/**
 * Prometheus metrics on the health-check server (`GET /metrics`). Values are pulled from the
 * router's own counters when scraped, so nothing is done per packet for metrics.
 */
export function createMetricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  registry.registerMetric(
    new Counter({
      name: 'firezone_gateway_packets_dropped_total',
      help: 'Packets and datagrams dropped, by reason',
      labelNames: ['reason'],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(source.dropCounters())) if (n > 0) this.inc({ reason }, n);
      },
      registers: [],
    }),
  );
  registry.registerMetric(
    new Counter({
      name: 'firezone_gateway_traffic_total',
      help: 'Packets and bytes through the gateway, by kind (fromClientsPackets, toTunPackets, ...)',
      labelNames: ['kind'],
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(source.traffic())) if (n > 0) this.inc({ kind }, n);
      },
      registers: [],
    }),
  );
  registry.registerMetric(
    new Gauge({
      name: 'firezone_gateway_clients',
      help: 'Clients currently known to the gateway',
      collect() {
        this.set(source.clients());
      },
      registers: [],
    }),
  );
  return registry;
}
