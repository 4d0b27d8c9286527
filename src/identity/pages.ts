/**
 * Sign-in pages: server-rendered, no JavaScript, no external resources, Russian and English. Every
 * value that reaches HTML goes through `esc`.
 */
export type Locale = 'ru' | 'en';

const TEXT = {
  ru: {
    title: 'Вход в Умный дом',
    residentIntro: 'Введите номер телефона, указанный управляющей компании. Мы пришлём код для входа.',
    phone: 'Номер телефона',
    sendCode: 'Получить код',
    codeIntro: 'Если номер зарегистрирован, на него отправлен код. Введите его ниже.',
    code: 'Код из SMS',
    signIn: 'Войти',
    otherPhone: 'Другой номер',
    operatorIntro: 'Вход для операторов PropDevelopment.',
    login: 'Логин',
    password: 'Пароль',
    totp: 'Код из приложения-аутентификатора',
    errInvalidPhone: 'Номер телефона указан неверно. Пример: +7 912 345-67-89.',
    errWrongCode: 'Код неверный. Проверьте и попробуйте ещё раз.',
    errExpired: 'Срок действия кода истёк. Запросите новый код.',
    errLocked: 'Слишком много неудачных попыток. Попробуйте позже.',
    errTooManyCodes: 'Слишком много запросов кода. Подождите немного и попробуйте снова.',
    errOperator: 'Неверный логин, пароль или код.',
    errCsrf: 'Форма устарела. Откройте страницу входа заново.',
    errSession: 'Сеанс входа истёк или не найден. Начните вход заново из приложения.',
    errRequest: 'Запрос не распознан.',
    language: 'English',
  },
  en: {
    title: 'Sign in to Smart Home',
    residentIntro:
      'Enter the phone number you gave your management company. We will send you a sign-in code.',
    phone: 'Phone number',
    sendCode: 'Send code',
    codeIntro: 'If the number is registered, a code has been sent to it. Enter it below.',
    code: 'Code from the SMS',
    signIn: 'Sign in',
    otherPhone: 'Another number',
    operatorIntro: 'Sign-in for PropDevelopment operators.',
    login: 'Login',
    password: 'Password',
    totp: 'Code from your authenticator app',
    errInvalidPhone: 'The phone number is not valid. Example: +7 912 345-67-89.',
    errWrongCode: 'The code is wrong. Check it and try again.',
    errExpired: 'The code has expired. Ask for a new one.',
    errLocked: 'Too many failed attempts. Try again later.',
    errTooManyCodes: 'Too many codes have been requested. Wait a while and try again.',
    errOperator: 'Wrong login, password or code.',
    errCsrf: 'The form is out of date. Open the sign-in page again.',
    errSession: 'The sign-in session has expired or was not found. Start again from the app.',
    errRequest: 'The request was not understood.',
    language: 'Русский',
  },
} as const;

export type MessageKey = keyof (typeof TEXT)['en'];

export function t(locale: Locale, key: MessageKey): string {
  return TEXT[locale][key];
}

function esc(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

/** `lang` query parameter, then the `sh_lang` cookie, then Accept-Language (ru unless English is preferred). */
export function pickLocale(
  query: unknown,
  cookie: string | undefined,
  acceptLanguage: string | undefined,
): Locale {
  if (query === 'ru' || query === 'en') return query;
  if (cookie === 'ru' || cookie === 'en') return cookie;
  const ranked = (acceptLanguage ?? '')
    .split(',')
    .map((part) => {
      const [tag = '', ...params] = part.trim().toLowerCase().split(';');
      const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
      return { lang: tag.split('-')[0] ?? '', q: q ? Number(q.slice(2)) || 0 : 1 };
    })
    .filter((x) => x.lang === 'ru' || x.lang === 'en')
    .sort((a, b) => b.q - a.q);
  return ranked[0]?.lang === 'en' ? 'en' : 'ru';
}

type Form = { kind: 'phone' } | { kind: 'code' } | { kind: 'operator' };

export function renderPage(opts: {
  locale: Locale;
  action: string;
  uid: string;
  csrf: string;
  form: Form | undefined;
  error?: MessageKey;
}): string {
  const { locale } = opts;
  const tx = (k: MessageKey) => esc(t(locale, k));
  const other: Locale = locale === 'ru' ? 'en' : 'ru';
  const hidden = `<input type="hidden" name="csrf" value="${esc(opts.csrf)}"><input type="hidden" name="lang" value="${locale}">`;
  const base = `/oauth/interaction/${encodeURIComponent(opts.uid)}`;
  let body = '';
  switch (opts.form?.kind) {
    case 'phone':
      body = `<p>${tx('residentIntro')}</p>
<form method="post" action="${base}/phone">${hidden}
<label for="phone">${tx('phone')}</label>
<input id="phone" name="phone" type="tel" inputmode="tel" autocomplete="tel" required maxlength="32" placeholder="+7 ___ ___-__-__">
<button type="submit">${tx('sendCode')}</button></form>`;
      break;
    case 'code':
      body = `<p>${tx('codeIntro')}</p>
<form method="post" action="${base}/code">${hidden}
<label for="code">${tx('code')}</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]*" required maxlength="12">
<button type="submit">${tx('signIn')}</button></form>
<form method="post" action="${base}/restart">${hidden}<button type="submit">${tx('otherPhone')}</button></form>`;
      break;
    case 'operator':
      body = `<p>${tx('operatorIntro')}</p>
<form method="post" action="${base}/operator">${hidden}
<label for="login">${tx('login')}</label>
<input id="login" name="login" autocomplete="username" required maxlength="63">
<label for="password">${tx('password')}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256">
<label for="totp">${tx('totp')}</label>
<input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]*" required maxlength="6">
<button type="submit">${tx('signIn')}</button></form>`;
      break;
    default:
      break;
  }
  const error = opts.error ? `<p role="alert" class="error">${tx(opts.error)}</p>` : '';
  return `<!doctype html>
<html lang="${locale}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${tx('title')}</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}label,input,button{display:block;width:100%;margin:.4rem 0;font-size:1rem;padding:.4rem;box-sizing:border-box}.error{color:#a00}</style>
</head><body><h1>${tx('title')}</h1>${error}${body}
<p><a href="${base}?lang=${other}" hreflang="${other}">${tx('language')}</a></p></body></html>`;
}
