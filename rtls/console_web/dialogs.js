// Modal <dialog> forms that send a command: validation, a busy submit button, the server's
// refusal shown inside the dialog (never dropped), Escape / Cancel to close, focus restored to
// the control that opened it. Also the toast and the screen-reader announcer.

import { t, tServerError } from "./i18n.js";

/** A readable message for a failed request (rejected promise). */
export function requestError(e) {
  const m = String((e && e.message) || e || "");
  if (m === "not connected") return t("err.notConnected");
  if (m === "no reply" || m === "closed") return t("err.noReply");
  if (m === "too many attempts") return t("err.tooManyAttempts");
  return m;
}

/**
 * Wire `dialog` (a <dialog> holding a <form>, a `.dialog-error`, a submit button and a
 * [data-cancel] button). Returns {open(handler)}; handler: prepare(), validate() -> message or
 * null, submit() -> Promise of the command reply, done(reply), focus (element to focus),
 * refocus() -> the element to focus on close when the opener is gone.
 */
export function bindDialog(dialog) {
  const form = dialog.querySelector("form");
  const err = dialog.querySelector(".dialog-error");
  const submit = form.querySelector("[type=submit]");
  let current = null;
  let opener = null;
  let refocus = null;   // finds the opener again when the view was rebuilt meanwhile
  const show = (msg) => {
    err.textContent = msg || "";
    err.hidden = !msg;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!current || submit.disabled) return;
    const problem = current.validate ? current.validate() : null;
    if (problem) { show(problem); return; }
    show(null);
    submit.disabled = true;
    const handler = current;
    try {
      const reply = await handler.submit();
      if (reply && reply.ok === false) { show(tServerError(reply.error)); return; }
      dialog.close();
      handler.done?.(reply);
    } catch (e) {
      show(requestError(e));
    } finally {
      submit.disabled = false;
    }
  });
  dialog.querySelector("[data-cancel]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    const back = opener && opener.isConnected ? opener : refocus && refocus();
    current = null;
    opener = null;
    refocus = null;
    if (back && typeof back.focus === "function") back.focus();
  });
  return {
    open(handler) {
      current = handler;
      opener = document.activeElement;
      refocus = handler.refocus || null;
      show(null);
      submit.disabled = false;
      handler.prepare?.();
      if (!dialog.open) dialog.showModal();
      (handler.focus || form.querySelector("select, input, textarea, button"))?.focus();
    },
    close() { if (dialog.open) dialog.close(); },
    get isOpen() { return dialog.open; },
  };
}

let toastTimer = null;

/** Show `msg` in #toast: kind "error" stays 10 s (role alert), "ok" 4 s. */
export function toast(msg, kind = "error") {
  const el = document.getElementById("toast");
  el.textContent = msg;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 10000 : 4000);
}

/** Say `msg` through the assertive aria-live region. */
export function announce(msg) {
  const el = document.getElementById("announcer");
  el.textContent = "";
  // A fresh text node after a tick so that repeated messages are read again.
  setTimeout(() => { el.textContent = msg; }, 50);
}
