/** Standalone mode (`--config FILE`): the policy file and the gateway's private key. */
export {
  completeStandaloneConfig,
  DEFAULT_LISTEN_PORT,
  DEFAULT_ROUTES,
  loadStandaloneConfig,
  parseStandaloneConfig,
  type StandaloneConfig,
  StandaloneConfigError,
  type StandaloneConfigOptions,
  type StandalonePeer,
  type StandalonePolicy,
} from './config.js';
export {
  DEFAULT_PRIVATE_KEY_FILE,
  generatePrivateKey,
  type PrivateKeySpec,
  type ResolvedPrivateKey,
  readOrCreatePrivateKeyFile,
  resolvePrivateKey,
} from './private-key.js';
