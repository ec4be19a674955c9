// The command forms: resolve an alarm (outcome, comment required for latching alarms), a
// confirmation with an optional reason (Code Pink, discharge), and a baby's sign-out.
// Each is a <dialog> of index.html wired by dialogs.js.

import { bindDialog, toast } from "./dialogs.js";
import { t, tName } from "./i18n.js";

const $ = (id) => document.getElementById(id);

/** ctx: state (the page's), describeSubject(alarm), tagLabel(id), command(name, args) -> reply. */
export function makeForms(ctx) {
  const { state, describeSubject, tagLabel } = ctx;
  const client = { command: ctx.command };
  const resolveDialog = bindDialog($("resolve-dialog"));
  const confirmDialog = bindDialog($("confirm-dialog"));
  const signOutDialog = bindDialog($("signout-dialog"));
  const pairDialog = bindDialog($("pair-dialog"));

  function openResolve() {
    const a = state.alarms[state.selected];
    if (!a) return;
    const comment = $("resolve-comment");
    resolveDialog.open({
      prepare: () => {
        $("resolve-title").textContent = `${t("resolve.title", { id: a.id })} — ${tName("type", a.type)}, ${describeSubject(a)}`;
        $("resolve-outcome").value = "genuine";
        comment.value = "";
        comment.required = Boolean(a.latching);
        $("resolve-comment-label").textContent = t(a.latching ? "resolve.commentRequired" : "resolve.comment");
      },
      focus: $("resolve-outcome"),
      validate: () => (a.latching && !comment.value.trim() ? t("resolve.needComment") : null),
      submit: () => client.command("resolve", { alarm: a.id, outcome: $("resolve-outcome").value, comment: comment.value.trim() }),
      done: () => toast(t("ok.resolved", { id: a.id }), "ok"),
    });
  }

  /** A confirmation (with a required reason when `reason`) before a command built by make(reason). */
  function confirmCommand(message, reason, make, refocus = null) {
    const input = $("confirm-reason");
    confirmDialog.open({
      prepare: () => {
        $("confirm-message").textContent = message;
        $("confirm-reason-row").hidden = !reason;
        input.value = "";
      },
      focus: reason ? input : $("confirm-submit"),
      refocus,
      validate: () => (reason && !input.value.trim() ? `${t("ward.reason")}: ${t("err.required")}` : null),
      submit: () => { const c = make(input.value.trim()); return client.command(c.command, c.args); },
      done: () => toast(t("ward.done"), "ok"),
    });
  }

  function wardButton(tag) {
    return document.querySelector(`#ward-board tr[data-baby="${CSS.escape(tag)}"] button`);
  }

  function openSignOut(b) {
    const escort = $("signout-escort");
    const minutes = $("signout-duration");
    const reason = $("signout-reason");
    signOutDialog.open({
      prepare: () => {
        $("signout-title").textContent = t("ward.signOutTitle", { name: b.name || b.tag });
        const options = $("escort-options");
        options.replaceChildren();
        const tags = ((state.site && state.site.tags) || []).filter((x) => x.kind === "staff" || x.id === b.mother);
        for (const tag of tags) {
          const o = document.createElement("option");
          o.value = tag.id;
          o.label = tagLabel(tag.id);
          options.appendChild(o);
        }
        escort.value = b.mother || "";
        minutes.value = "30";
        reason.value = "";
      },
      focus: escort,
      refocus: () => wardButton(b.tag),
      validate: () => {
        if (!escort.value.trim()) return `${t("ward.escort")}: ${t("err.required")}`;
        const m = Number(minutes.value);
        if (!Number.isFinite(m) || m <= 0) return `${t("ward.duration")}: ${t("err.required")}`;
        if (!reason.value.trim()) return `${t("ward.reason")}: ${t("err.required")}`;
        return null;
      },
      submit: () => client.command("sign_out", { baby: b.tag, escort: escort.value.trim(),
        duration_s: Math.round(Number(minutes.value) * 60), reason: reason.value.trim() }),
      done: () => toast(t("ward.done"), "ok"),
    });
  }

  /** Pair baby `b` with a mother tag that no other baby of the board is paired with. */
  function openPair(b) {
    const select = $("pair-mother");
    pairDialog.open({
      prepare: () => {
        $("pair-title").textContent = t("ward.pairTitle", { name: b.name || b.tag });
        const taken = new Set(((state.ward && state.ward.babies) || []).map((x) => x.mother).filter(Boolean));
        const mothers = ((state.site && state.site.tags) || []).filter((x) => x.kind === "mother" && !taken.has(x.id));
        select.replaceChildren();
        for (const m of mothers) {
          const o = document.createElement("option");
          o.value = m.id;
          o.textContent = tagLabel(m.id);
          select.appendChild(o);
        }
      },
      focus: select,
      refocus: () => wardButton(b.tag),
      validate: () => (select.value ? null : `${t("ward.motherTag")}: ${t("err.required")}`),
      submit: () => client.command("pair", { baby: b.tag, mother: select.value }),
      done: () => toast(t("ward.done"), "ok"),
    });
  }

  return { openResolve, confirmCommand, wardButton, openSignOut, openPair };
}
