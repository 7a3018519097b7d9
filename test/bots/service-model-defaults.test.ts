import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  effectiveHere,
  MODEL_DEFAULTS_CACHE_MS,
  MODEL_DEFAULTS_WAIT_MS,
} from '../../bots/service/model-defaults.ts';
import { globalSettingsOf } from '../../bots/service/team.ts';
import { ConversationService, type ServiceSettings } from '../../bots/service.ts';
import type { ImagineCommand } from '../../bots/surface.ts';
import type { DefaultsLayer, ModelGenerationDefaults } from '../../core/generation-defaults.ts';
import { FakeJobs } from './fake-jobs.ts';
import { RecordingReply, RecordingSurface } from './recording-surface.ts';
import { SERVICE_SETTINGS } from './service-settings.ts';

/** No DEFAULT_* nor MAX_PIXELS set in the environment: these are the built-in defaults. */
const SETTINGS: ServiceSettings = {
  ...SERVICE_SETTINGS,
  // MAX_PIXELS unset too: a model's own larger size raises the limit on it.
  limits: { ...SERVICE_SETTINGS.limits, maxPixelsBuiltIn: true, models: ['base', 'turbo', 'sdxl'] },
};

const TURBO = { steps: 1, guidance: 0, width: 512, height: 512, sampler: 'euler_a' } as const;

describe('the service applies the announced model defaults (FakeJobs)', () => {
  let jobs: FakeJobs;
  let service: ConversationService;
  let clock: number;
  let lines: { level: string; obj: object; msg: string }[];
  let n = 0;

  beforeEach(() => {
    jobs = new FakeJobs();
    clock = 1_700_000_000_000;
    lines = [];
    const at = (level: string) => (obj: object, msg: string) => lines.push({ level, obj, msg });
    service = new ConversationService({
      jobs,
      settings: SETTINGS,
      now: () => clock,
      log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    });
    service.attach(new RecordingSurface());
  });
  afterEach(async () => {
    await service.close();
  });

  /** The spec's settings for `/imagine <text>`, or the private refusal. */
  async function imagine(text: string) {
    const reply = new RecordingReply();
    const command = {
      surface: 'discord',
      user: `u${n}`,
      userName: 'Ada',
      channel: 'c1',
      interactionId: `i${n++}`,
      messageRef: { token: 't' },
      text,
    } as ImagineCommand;
    const result = await service.imagine(command, reply);
    if (result.jobId === undefined) return { refused: reply.only('privately')[0]?.text };
    const { steps, guidance, sampler, width, height, model } = jobs.records.get(result.jobId)!.spec;
    return { steps, guidance, sampler, width, height, model };
  }

  it('a model with announced defaults runs with them; one without: the built-in ones, said in the log only', async () => {
    jobs.announcedDefaults.set('turbo', TURBO);
    expect(await imagine('a cat --model turbo')).toEqual({ ...TURBO, model: 'turbo' });
    expect(await imagine('a cat')).toEqual({
      steps: 25,
      guidance: 7.5,
      sampler: 'pndm',
      width: 512,
      height: 512,
      model: 'base',
    });
    expect(lines).toContainEqual({
      level: 'info',
      obj: { model: 'base' },
      msg: 'no worker has announced this model’s defaults: using the built-in defaults',
    });
  });

  it('asks once per model within the cache time, then again (a new worker’s defaults show)', async () => {
    jobs.announcedDefaults.set('turbo', TURBO);
    await imagine('a cat --model turbo');
    jobs.announcedDefaults.set('turbo', { ...TURBO, steps: 2 });
    expect((await imagine('a cat --model turbo')).steps).toBe(1);
    expect(jobs.defaultsAsked).toEqual(['turbo']);
    clock += MODEL_DEFAULTS_CACHE_MS;
    expect((await imagine('a cat --model turbo')).steps).toBe(2);
    expect(jobs.defaultsAsked).toEqual(['turbo', 'turbo']);
  });

  it('Redis trouble reading them: the built-in ones, a warning in the log, and no caching of the failure', async () => {
    jobs.announcedDefaults.set('turbo', TURBO);
    const read = jobs.modelDefaults.bind(jobs);
    jobs.modelDefaults = async () => {
      throw new Error('redis down');
    };
    expect(await imagine('a cat --model turbo')).toMatchObject({ steps: 25, guidance: 7.5 });
    expect(lines.map((l) => [l.level, l.msg])).toContainEqual([
      'warn',
      'model defaults unavailable: using the built-in defaults',
    ]);
    expect(lines.map((l) => l.msg)).not.toContain(
      'no worker has announced this model’s defaults: using the built-in defaults',
    );
    jobs.modelDefaults = read;
    expect(await imagine('a cat --model turbo')).toEqual({ ...TURBO, model: 'turbo' });
  });

  it('a read that hangs never holds a command up: built-in defaults at once, the value once it arrives', async () => {
    let answer: (value: ModelGenerationDefaults | null) => void = () => undefined;
    const read = jobs.modelDefaults.bind(jobs);
    jobs.modelDefaults = (model: string) => {
      jobs.defaultsAsked.push(model);
      return new Promise((resolve) => {
        answer = resolve;
      });
    };
    const started = performance.now();
    expect(await imagine('a cat --model turbo')).toMatchObject({ steps: 25, guidance: 7.5, sampler: 'pndm' });
    expect(await imagine('a dog --model turbo')).toMatchObject({ steps: 25, guidance: 7.5 });
    // Each waited at most MODEL_DEFAULTS_WAIT_MS for the one read still under way.
    expect(performance.now() - started).toBeLessThan(4 * MODEL_DEFAULTS_WAIT_MS + 500);
    expect(jobs.defaultsAsked).toEqual(['turbo']);
    answer(TURBO);
    jobs.modelDefaults = read;
    expect(await imagine('a cat --model turbo')).toEqual({ ...TURBO, model: 'turbo' });
    expect(jobs.defaultsAsked).toEqual(['turbo']);
  });

  it('an invalid announcement counts as none', async () => {
    jobs.announcedDefaults.set('turbo', { ...TURBO, width: 500 });
    expect(await imagine('a cat --model turbo')).toMatchObject({ steps: 25, width: 512, sampler: 'pndm' });
  });

  it('a model’s own size is allowed on it past MAX_PIXELS, and is its default; not on other models', async () => {
    jobs.announcedDefaults.set('sdxl', { steps: 30, guidance: 5, width: 1024, height: 1024 });
    expect(await imagine('a cat --model sdxl')).toEqual({
      steps: 30,
      guidance: 5,
      sampler: 'pndm',
      width: 1024,
      height: 1024,
      model: 'sdxl',
    });
    expect(await imagine('a cat --model sdxl --size 1024x960')).toMatchObject({ width: 1024, height: 960 });
    expect((await imagine('a cat --model turbo --size 1024x1024')).refused).toContain('the limit is 589824');
  });
});

describe('MAX_PIXELS set by the operator: a cap on every model, a larger own size scaled down', () => {
  it('SDXL’s 1024² becomes 512² under MAX_PIXELS 512², and the queued message says so', async () => {
    const jobs = new FakeJobs();
    jobs.announcedDefaults.set('sdxl', { steps: 30, guidance: 5, width: 1024, height: 1024 });
    const { maxPixelsBuiltIn: _, ...limits } = SETTINGS.limits;
    const service = new ConversationService({
      jobs,
      settings: { ...SETTINGS, limits: { ...limits, maxPixels: 512 * 512 } },
    });
    service.attach(new RecordingSurface());
    try {
      const ask = async (text: string) => {
        const reply = new RecordingReply();
        const command = {
          surface: 'discord',
          user: 'u1',
          userName: 'Ada',
          channel: 'c1',
          interactionId: `cap-${text}`,
          messageRef: { token: 't' },
          text,
        } as ImagineCommand;
        const result = await service.imagine(command, reply);
        return { result, reply };
      };
      const plain = await ask('a cat --model sdxl');
      expect(jobs.records.get(plain.result.jobId!)!.spec).toMatchObject({ width: 512, height: 512 });
      expect(plain.reply.only('queued')[0]?.view.warnings).toContain(
        "The model's own size 1024×1024 is over the limit here (262144 pixels), so it was reduced to 512×512.",
      );
      const asked = await ask('a cat --model sdxl --size 1024x1024');
      expect(asked.reply.only('privately')[0]?.text).toContain('the limit is 262144');
      const sized = await ask('a dog --model sdxl --size 512x384');
      expect(sized.reply.only('queued')[0]?.view.warnings ?? []).not.toContainEqual(
        expect.stringMatching(/reduced/u),
      );
    } finally {
      await service.close();
    }
  });
});

describe('effectiveHere: the settings views show what /imagine without flags uses', () => {
  const effective = globalSettingsOf(SETTINGS);
  const announced = { turbo: TURBO, sdxl: { steps: 30, guidance: 5, width: 1024, height: 1024 } };
  const asked: string[] = [];
  const read = async (model: string): Promise<DefaultsLayer | null> => {
    asked.push(model);
    return announced[model as keyof typeof announced] ?? null;
  };

  it('the default model’s defaults where the team set nothing; the team’s model when it sets a served one', async () => {
    expect(await effectiveHere(SETTINGS.limits, { effective, teamDefaults: {} }, read)).toMatchObject({
      steps: 25,
      guidance: 7.5,
      sampler: 'pndm',
    });
    const onTurbo = { effective: { ...effective, model: 'turbo' }, teamDefaults: {} };
    expect(await effectiveHere(SETTINGS.limits, onTurbo, read)).toMatchObject({
      steps: 1,
      guidance: 0,
      sampler: 'euler_a',
    });
    const gone = { effective: { ...effective, model: 'gone' }, teamDefaults: {} };
    await effectiveHere(SETTINGS.limits, gone, read);
    expect(asked).toEqual(['base', 'turbo', 'base']);
  });

  it('what the team set stays as set', async () => {
    const resolved = { effective: { ...effective, model: 'turbo', steps: 3 }, teamDefaults: { steps: 3 } };
    expect(await effectiveHere(SETTINGS.limits, resolved, read)).toMatchObject({ steps: 3, guidance: 0 });
  });
});
