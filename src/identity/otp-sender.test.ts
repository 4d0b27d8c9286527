import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Config } from '../config/config.ts';
import { createCa, issueServerCert } from '../pki/certificates.ts';
import { otpSenderFromConfig } from './identity.ts';
import { createWebhookOtpSender, inBackground, otpText } from './otp-sender.ts';

// A stand-in SMS gateway over real TLS: records what it is sent, answers what the test says.
let server: Server;
let url: string;
let ca: string;
let answer = 202;
let delayMs = 0;
const received: Array<{ auth: string | undefined; type: string | undefined; body: unknown }> = [];

before(async () => {
  const root = await createCa({ commonName: 'sms gateway test CA' });
  const cert = await issueServerCert(root, { commonName: 'localhost', ipAddresses: ['127.0.0.1'] });
  ca = root.certPem;
  server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    let data = '';
    req.on('data', (c) => {
      data += c;
    });
    req.on('end', () => {
      received.push({
        auth: req.headers.authorization,
        type: req.headers['content-type'],
        body: JSON.parse(data),
      });
      setTimeout(() => res.writeHead(answer).end(), delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/send`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

describe('the SMS gateway webhook sender', () => {
  test('posts the number, the localised text and the locale with the bearer token, over the pinned CA', async () => {
    received.length = 0;
    const sender = createWebhookOtpSender({ url, token: 's3cret', ca, timeoutMs: 2000 });
    await sender.send({ phone: '+79123456789', code: '123456', locale: 'ru' });
    await sender.send({ phone: '+79123456789', code: '654321', locale: 'en' });
    await sender.close();
    assert.deepEqual(received, [
      {
        auth: 'Bearer s3cret',
        type: 'application/json',
        body: { to: '+79123456789', text: otpText('123456', 'ru'), locale: 'ru' },
      },
      {
        auth: 'Bearer s3cret',
        type: 'application/json',
        body: { to: '+79123456789', text: otpText('654321', 'en'), locale: 'en' },
      },
    ]);
    assert.match(otpText('123456', 'ru'), /^Код для входа в SmartHome: 123456\./);
  });
  test('a refusal, an unknown CA, a slow gateway and http are failures that name neither number nor code', async () => {
    const phone = '+79123456789';
    const code = '777777';
    answer = 500;
    const s1 = createWebhookOtpSender({ url, ca, timeoutMs: 2000 });
    await assert.rejects(
      s1.send({ phone, code, locale: 'ru' }),
      (err: Error) => err.message === 'SMS gateway answered 500',
    );
    answer = 202;
    const s2 = createWebhookOtpSender({ url, timeoutMs: 2000 }); // system CAs: our test CA is not one
    await assert.rejects(
      s2.send({ phone, code, locale: 'ru' }),
      (err: Error) => /^SMS gateway unreachable/.test(err.message) && !err.message.includes(phone),
    );
    delayMs = 500;
    const s3 = createWebhookOtpSender({ url, ca, timeoutMs: 150 });
    await assert.rejects(s3.send({ phone, code, locale: 'ru' }), /SMS gateway unreachable/);
    delayMs = 0;
    assert.throws(
      () => createWebhookOtpSender({ url: url.replace('https:', 'http:'), timeoutMs: 100 }),
      /must be https/,
    );
    await Promise.all([s1.close(), s2.close(), s3.close()]);
  });
});

describe('sending in the background', () => {
  test('send returns before delivery ends; failures reach onError; drain waits for all', async () => {
    const errors: unknown[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let delivered = 0;
    const slow = inBackground(
      {
        async send({ code }) {
          await gate;
          if (code === 'bad') throw new Error('gateway down');
          delivered++;
        },
      },
      (err) => errors.push(err),
    );
    await slow.send({ phone: '+7', code: 'ok', locale: 'en' });
    await slow.send({ phone: '+7', code: 'bad', locale: 'en' });
    assert.equal(delivered, 0, 'nothing delivered yet, yet both sends returned');
    release();
    await slow.drain();
    assert.equal(delivered, 1);
    assert.equal((errors[0] as Error).message, 'gateway down');
  });
});

describe('the sender the configuration names', () => {
  const cfg = (env: string, identity: Record<string, unknown>) =>
    ({ env, identity: { otpWebhookTimeoutMs: 1000, ...identity } }) as unknown as Config;
  test('production refuses the console sender; webhook needs an https URL and readable files', async () => {
    await assert.rejects(
      otpSenderFromConfig(cfg('production', { otpSender: 'console' })),
      /refused in production/,
    );
    assert.ok(await otpSenderFromConfig(cfg('development', { otpSender: 'console' })));
    await assert.rejects(
      otpSenderFromConfig(cfg('production', { otpSender: 'webhook' })),
      /needs SMART_HOME_OTP_WEBHOOK_URL/,
    );
    await assert.rejects(
      otpSenderFromConfig(cfg('production', { otpSender: 'webhook', otpWebhookUrl: 'http://sms.example' })),
      /SMART_HOME_OTP_WEBHOOK_URL: the SMS gateway URL must be https/,
    );
    await assert.rejects(
      otpSenderFromConfig(
        cfg('production', { otpSender: 'webhook', otpWebhookUrl: url, otpWebhookTokenFile: '/nonexistent' }),
      ),
      /cannot read SMART_HOME_OTP_WEBHOOK_TOKEN_FILE/,
    );
    const ok = await otpSenderFromConfig(cfg('production', { otpSender: 'webhook', otpWebhookUrl: url }));
    assert.equal(typeof ok.send, 'function');
  });
});
