import { describe, expect, it } from 'vitest';
import { isLoopbackHost, parseConfig } from '../../core/config.ts';

describe('loopback means the literal loopback addresses and localhost, nothing else', () => {
  it('accepts 127.0.0.0/8 as four decimal octets, ::1, [::1] and localhost', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      '127.255.255.255',
      '127.0.0.0',
      '::1',
      '[::1]',
      'localhost',
    ]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
  });

  it('refuses names that only look like loopback', () => {
    for (const host of [
      '127.attacker.example',
      '127.0.0.1.attacker.example',
      '127.0.0.1.nip.io',
      '127.0.0',
      '127.0.0.256',
      '127.0.0.1:80',
      '127.0.0.01',
      '127.000.0.1',
      '127.0.0.-1',
      '127.',
      '128.0.0.1',
      '0.0.0.0',
      'localhost.attacker.example',
      'localhost.',
      '::',
      '::2',
      '[::1]x',
      '',
    ]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });

  it('HOST=127.attacker.example without PLAYGROUND_TOKEN is refused by the config', () => {
    const r = parseConfig({ HOST: '127.attacker.example' });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors.join('\n')).toContain('PLAYGROUND_TOKEN: required when HOST (127.attacker.example)');
    expect(parseConfig({ HOST: '127.0.0.2' }).ok).toBe(true);
    expect(parseConfig({ HOST: '::1' }).ok).toBe(true);
    expect(parseConfig({ HOST: '127.attacker.example', PLAYGROUND_TOKEN: 'a-token' }).ok).toBe(true);
  });
});
