import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PlateError } from './plate.ts';
import { checkRussianPlate, displayPlate } from './plate-format.ts';

const refused = (input: string): string => {
  try {
    checkRussianPlate(input);
  } catch (err) {
    assert.ok(err instanceof PlateError);
    return err.message;
  }
  assert.fail('expected the plate to be refused');
};

describe('checkRussianPlate: what a person may register', () => {
  test('every documented format is accepted, in Cyrillic or Latin, with separators and RUS', () => {
    const cases: Array<[string, string, string]> = [
      ['А123ВС77', 'A123BC77', 'private'],
      ['а 123 вс 777', 'A123BC777', 'private'],
      ['A123BC77 RUS', 'A123BC77', 'private'],
      ['ТА 123 77', 'TA12377', 'taxi'],
      ['АВ 1234 77', 'AB123477', 'trailer'],
      ['1234 АВ 50', '1234AB50', 'motorcycle'],
      ['АВ 123 С 77', 'AB123C77', 'transit'],
      ['А 1234 77', 'A123477', 'police'],
      ['1234 А 77', '1234A77', 'police-motorcycle'],
      ['001 CD 1 77', '001CD177', 'diplomatic'],
      ['001 D 001 77', '001D00177', 'diplomatic'],
    ];
    for (const [input, canonical, format] of cases) {
      assert.deepEqual(checkRussianPlate(input), { canonical, format }, input);
    }
  });

  test('a letter no Russian plate carries is named by its position', () => {
    assert.match(refused('Ж123ВС77'), /^character 1 is not one of the 12 letters used on Russian plates/);
    assert.match(refused('А123ВЯ77'), /^character 6 is not one of the 12 letters/);
    // Latin letters without a Cyrillic twin pass §5.1 but are still not Russian plate letters.
    assert.match(refused('Z123BC77'), /^character 1 is not one of the 12 letters/);
    assert.match(refused('А123ВС77 RUS'.replace('RUS', 'RUZ')), /^character 10 /);
  });

  test('punctuation, emptiness and length are explained', () => {
    assert.match(refused('А123#ВС77'), /^character 5 is neither a letter, a digit nor a separator/);
    assert.equal(refused('  - '), 'a licence plate is required');
    assert.equal(refused('7'), 'a licence plate has at least 2 letters or digits');
    assert.equal(refused('1234567890123'), 'a licence plate has at most 12 letters and digits');
    assert.match(refused('А'.repeat(80)), /at most 64 characters/);
  });

  test('an impossible region and an all-zero number are named', () => {
    assert.match(refused('А123ВС00'), /^the region code must be 01–99/);
    assert.match(refused('А123ВС577'), /^the region code must be/);
    assert.match(refused('А000ВС77'), /^the registration number cannot be all zeros/);
  });

  test('a shape of no format lists the formats accepted', () => {
    assert.match(refused('АВС12377'), /do not form a Russian plate: expected private car А123ВС77/);
    assert.match(refused('12345'), /do not form a Russian plate/);
  });

  test('messages never repeat the input', () => {
    for (const input of ['Ж123ВС77', 'А123ВС00', 'АВС12377', 'QQ999']) {
      const m = refused(input);
      assert.ok(!m.includes(input), m);
      assert.ok(!m.includes(input.slice(1, 4)), m);
    }
  });

  test('displayPlate writes the letters in Cyrillic, except diplomatic series', () => {
    assert.equal(displayPlate('A123BC77'), 'А123ВС77');
    assert.equal(displayPlate('001CD177'), '001CD177');
  });
});
