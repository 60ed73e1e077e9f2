/** Sign-in: a principal's API key or the server's admin token (coffre-data/admin.token). */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { api } from './api.js';
import { ErrorBox, html } from './ui.js';

export function SignIn(props: { onSignedIn: (s: { principal: string; csrf: string }) => void }): ComponentChildren {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      props.onSignedIn(await api.signIn(key));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>Coffre <span>Backup center</span></h1>
    <form onSubmit=${submit} class="panel">
      <label for="key">API key or admin token</label>
      <input id="key" name="key" type="password" autocomplete="off" required value=${key} onInput=${(e: Event) => setKey((e.target as HTMLInputElement).value)} />
      <p class="hint">The admin token of an embedded server is in <code>coffre-data/admin.token</code>. Machine (agent) keys cannot sign in.</p>
      <button type="submit" disabled=${busy}>Sign in</button>
      <${ErrorBox} error=${error} />
    </form>
  </main>`;
}
