// Every user-visible string of the console, in English and French.
// t(key, params) looks the key up in the current language ({name} placeholders);
// French is the default when the browser's language starts with "fr".

const EN = {
  "app.title": "RTLS console",
  "lang.label": "Language",
  "login.title": "Sign in",
  "login.user": "User name",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.busy": "Signing in…",
  "logout": "Sign out",
  "conn.connecting": "Connecting…",
  "conn.connected": "Connected",
  "conn.reconnecting": "Reconnecting…",
  "conn.stale": "No data for {s} s",
  "conn.offline": "Not connected",
  "tab.plan": "Floor plan",
  "tab.ward": "Ward board",
  "tab.tech": "Technical",
  "tab.audit": "Audit",
  "plan.floor": "Floor",
  "plan.legend.infant": "Baby",
  "plan.legend.mother": "Mother",
  "plan.legend.staff": "Worker in alarm",
  "plan.legend.gateway": "Gateway",
  "plan.legend.offline": "Gateway offline",
  "plan.legend.exit": "Exit zone",
  "plan.legend.restricted": "Restricted zone",
  "plan.none": "No site plan yet.",
  "plan.tagsShown": "{n} tags located on this floor",
  "alarms.title": "Alarms",
  "alarms.count": "{n} open, {u} unacknowledged",
  "alarms.empty": "No open alarm.",
  "alarms.select": "Select an alarm to see it on the plan.",
  "alarms.age": "Age",
  "alarms.raised": "Raised",
  "alarms.location": "Location",
  "alarms.subject": "Subject",
  "alarms.state": "State",
  "alarms.priority": "Priority",
  "alarms.ackedBy": "Acknowledged by",
  "alarms.escalation": "Escalation step",
  "alarms.shelvedUntil": "Shelved until",
  "alarms.occurrences": "Occurrences",
  "alarms.unknownLocation": "location unknown",
  "alarms.latching": "latching: needs an outcome and a comment",
  "alarms.announceHigh": "High priority alarm: {type}, {subject}, {where}",
  "btn.ack": "Acknowledge",
  "btn.resolve": "Resolve",
  "btn.shelve": "Shelve",
  "shelve.label": "Shelve for",
  "shelve.15m": "15 min",
  "shelve.1h": "1 h",
  "shelve.8h": "8 h",
  "ok.shelved": "Alarm {id} shelved.",
  "btn.cancel": "Cancel",
  "btn.confirm": "Confirm",
  "btn.refresh": "Refresh",
  "btn.enableSound": "Sound blocked by the browser: click to enable",
  "resolve.title": "Resolve alarm {id}",
  "resolve.outcome": "Outcome",
  "resolve.comment": "Comment",
  "resolve.commentRequired": "Comment (required for this alarm)",
  "resolve.submit": "Resolve",
  "resolve.needComment": "A comment is required to resolve a latching alarm.",
  "outcome.genuine": "Genuine",
  "outcome.false": "False alarm",
  "outcome.test": "Test",
  "outcome.technical": "Technical fault",
  "outcome.cleared": "Cleared",
  "priority.high": "High",
  "priority.medium": "Medium",
  "priority.low": "Low",
  "state.active_unacknowledged": "Unacknowledged",
  "state.unacknowledged": "Unacknowledged",
  "state.active_acknowledged": "Acknowledged",
  "state.acknowledged": "Acknowledged",
  "state.cleared_unacknowledged": "Cleared, unacknowledged",
  "state.cleared": "Cleared",
  "state.closed": "Closed",
  "state.shelved": "Shelved",
  "type.exit": "Exit",
  "type.tamper": "Strap cut / tamper",
  "type.tag_loose": "Tag loose",
  "type.tag_silent": "Tag silent",
  "type.restricted_zone": "Restricted zone",
  "type.loiter": "Loitering near exit",
  "type.mismatch": "Mother–baby mismatch",
  "type.code_pink": "Code Pink",
  "type.low_battery": "Low battery",
  "type.sign_out_overdue": "Sign-out overdue",
  "type.pairing_overdue": "Pairing overdue",
  "type.sos": "SOS",
  "type.pull_cord": "Pull-cord",
  "type.pre_alarm": "Pre-alarm",
  "type.man_down": "Man down",
  "type.no_movement": "No movement",
  "type.fall": "Fall",
  "type.check_in_missed": "Check-in missed",
  "type.gateway_silent": "Gateway silent",
  "type.reader_silent": "Door reader silent",
  "type.broker_link_lost": "Broker link lost",
  "type.tag_spoofing": "Tag spoofing (replay or clone)",
  "ward.title": "Ward board",
  "ward.empty": "No baby admitted.",
  "ward.baby": "Baby",
  "ward.ward": "Ward",
  "ward.mother": "Mother",
  "ward.signOut": "Sign-out",
  "ward.battery": "Battery",
  "ward.actions": "Actions",
  "ward.pairingDue": "pairing due {time}",
  "ward.pairingOverdue": "pairing overdue (since {time})",
  "ward.in": "on the ward",
  "ward.out": "with {escort} until {time}",
  "ward.overdue": "overdue: with {escort}, due {time}",
  "ward.codePink": "Code Pink",
  "ward.endCodePink": "End Code Pink",
  "ward.codePinkOn": "CODE PINK in progress: called by {by} at {time} ({reason})",
  "ward.codePinkConfirm": "Call a Code Pink? Every exit is armed and sign-outs are refused.",
  "ward.endCodePinkConfirm": "End the Code Pink?",
  "ward.reason": "Reason",
  "ward.signOutBtn": "Sign out",
  "ward.pairBtn": "Pair",
  "ward.pairTitle": "Pair {name} with a mother tag",
  "ward.motherTag": "Mother tag",
  "ward.returnBtn": "Return",
  "ward.dischargeBtn": "Discharge",
  "ward.dischargeConfirm": "Discharge {name}? The tag is freed.",
  "ward.signOutTitle": "Sign out {name}",
  "ward.escort": "Escort (staff or mother tag)",
  "ward.duration": "Duration (minutes)",
  "ward.done": "Done.",
  "tech.gateways": "Gateways",
  "tech.readers": "Door readers",
  "tech.unknown": "Unknown tags",
  "tech.errors": "Decode errors",
  "tech.ingest": "Ingest rate",
  "tech.tick": "Tick p99",
  "tech.online": "online",
  "tech.offline": "offline",
  "tech.id": "Id",
  "tech.floor": "Floor",
  "tech.status": "Status",
  "tech.lastHeard": "Last heard",
  "tech.never": "never",
  "tech.mac": "MAC",
  "tech.serial": "Serial",
  "tech.count": "Count",
  "tech.lastSeen": "Last seen",
  "tech.reason": "Reason",
  "tech.none": "None.",
  "tech.summary": "{on} of {all} online",
  "tech.noData": "Waiting for the first technical update…",
  "audit.title": "Audit trail (latest records)",
  "audit.when": "When",
  "audit.who": "Who",
  "audit.what": "What",
  "audit.subject": "Subject",
  "audit.detail": "Detail",
  "audit.empty": "No record.",
  "ago.s": "{n} s ago",
  "ago.m": "{n} min ago",
  "ago.h": "{n} h ago",
  "dur.s": "{s} s",
  "dur.ms": "{m} min {s} s",
  "dur.hm": "{h} h {m} min",
  "unit.perSecond": "{n} /s",
  "unit.ms": "{n} ms",
  "err.noReply": "No reply from the server.",
  "err.notConnected": "Not connected to the server.",
  "err.sessionExpired": "Your session has expired: please sign in again.",
  "err.tooManyAttempts": "Too many failed attempts: try again.",
  "err.wrongPassword": "Wrong user name or password.",
  "err.required": "Please fill in this field.",
  "ok.acknowledged": "Alarm {id} acknowledged.",
  "ok.resolved": "Alarm {id} resolved.",
};

const FR = {
  "app.title": "Console RTLS",
  "lang.label": "Langue",
  "login.title": "Connexion",
  "login.user": "Nom d’utilisateur",
  "login.password": "Mot de passe",
  "login.submit": "Se connecter",
  "login.busy": "Connexion…",
  "logout": "Se déconnecter",
  "conn.connecting": "Connexion…",
  "conn.connected": "Connecté",
  "conn.reconnecting": "Reconnexion…",
  "conn.stale": "Aucune donnée depuis {s} s",
  "conn.offline": "Non connecté",
  "tab.plan": "Plan",
  "tab.ward": "Tableau du service",
  "tab.tech": "Technique",
  "tab.audit": "Journal",
  "plan.floor": "Étage",
  "plan.legend.infant": "Bébé",
  "plan.legend.mother": "Mère",
  "plan.legend.staff": "Travailleur en alarme",
  "plan.legend.gateway": "Passerelle",
  "plan.legend.offline": "Passerelle hors ligne",
  "plan.legend.exit": "Zone de sortie",
  "plan.legend.restricted": "Zone interdite",
  "plan.none": "Pas encore de plan.",
  "plan.tagsShown": "{n} badges localisés à cet étage",
  "alarms.title": "Alarmes",
  "alarms.count": "{n} ouvertes, {u} non acquittées",
  "alarms.empty": "Aucune alarme ouverte.",
  "alarms.select": "Sélectionnez une alarme pour la voir sur le plan.",
  "alarms.age": "Âge",
  "alarms.raised": "Déclenchée",
  "alarms.location": "Lieu",
  "alarms.subject": "Objet",
  "alarms.state": "État",
  "alarms.priority": "Priorité",
  "alarms.ackedBy": "Acquittée par",
  "alarms.escalation": "Niveau d’escalade",
  "alarms.shelvedUntil": "Mise en attente jusqu’à",
  "alarms.occurrences": "Occurrences",
  "alarms.unknownLocation": "position inconnue",
  "alarms.latching": "maintenue : demande un motif et un commentaire",
  "alarms.announceHigh": "Alarme de priorité haute : {type}, {subject}, {where}",
  "btn.ack": "Acquitter",
  "btn.resolve": "Clore",
  "btn.shelve": "Mettre en attente",
  "shelve.label": "Mettre en attente pour",
  "shelve.15m": "15 min",
  "shelve.1h": "1 h",
  "shelve.8h": "8 h",
  "ok.shelved": "Alarme {id} mise en attente.",
  "btn.cancel": "Annuler",
  "btn.confirm": "Confirmer",
  "btn.refresh": "Actualiser",
  "btn.enableSound": "Son bloqué par le navigateur : cliquez pour l’activer",
  "resolve.title": "Clore l’alarme {id}",
  "resolve.outcome": "Motif",
  "resolve.comment": "Commentaire",
  "resolve.commentRequired": "Commentaire (obligatoire pour cette alarme)",
  "resolve.submit": "Clore",
  "resolve.needComment": "Un commentaire est obligatoire pour clore une alarme maintenue.",
  "outcome.genuine": "Réelle",
  "outcome.false": "Fausse alarme",
  "outcome.test": "Essai",
  "outcome.technical": "Défaut technique",
  "outcome.cleared": "Disparue",
  "priority.high": "Haute",
  "priority.medium": "Moyenne",
  "priority.low": "Basse",
  "state.active_unacknowledged": "Non acquittée",
  "state.unacknowledged": "Non acquittée",
  "state.active_acknowledged": "Acquittée",
  "state.acknowledged": "Acquittée",
  "state.cleared_unacknowledged": "Disparue, non acquittée",
  "state.cleared": "Disparue",
  "state.closed": "Close",
  "state.shelved": "En attente",
  "type.exit": "Sortie",
  "type.tamper": "Bracelet coupé / arraché",
  "type.tag_loose": "Bracelet desserré",
  "type.tag_silent": "Badge muet",
  "type.restricted_zone": "Zone interdite",
  "type.loiter": "Présence prolongée près d’une sortie",
  "type.mismatch": "Erreur mère–bébé",
  "type.code_pink": "Code rose",
  "type.low_battery": "Pile faible",
  "type.sign_out_overdue": "Retour de sortie en retard",
  "type.pairing_overdue": "Appairage en retard",
  "type.sos": "SOS",
  "type.pull_cord": "Cordon d’alarme",
  "type.pre_alarm": "Pré-alarme",
  "type.man_down": "Perte de verticalité",
  "type.no_movement": "Absence de mouvement",
  "type.fall": "Chute",
  "type.check_in_missed": "Pointage manqué",
  "type.gateway_silent": "Passerelle muette",
  "type.reader_silent": "Lecteur de porte muet",
  "type.broker_link_lost": "Lien avec le broker perdu",
  "type.tag_spoofing": "Usurpation de bracelet (rejeu ou clone)",
  "ward.title": "Tableau du service",
  "ward.empty": "Aucun bébé admis.",
  "ward.baby": "Bébé",
  "ward.ward": "Service",
  "ward.mother": "Mère",
  "ward.signOut": "Sortie",
  "ward.battery": "Pile",
  "ward.actions": "Actions",
  "ward.pairingDue": "appairage avant {time}",
  "ward.pairingOverdue": "appairage en retard (depuis {time})",
  "ward.in": "dans le service",
  "ward.out": "avec {escort} jusqu’à {time}",
  "ward.overdue": "en retard : avec {escort}, attendu à {time}",
  "ward.codePink": "Code rose",
  "ward.endCodePink": "Fin du code rose",
  "ward.codePinkOn": "CODE ROSE en cours : déclenché par {by} à {time} ({reason})",
  "ward.codePinkConfirm": "Déclencher un code rose ? Toutes les sorties sont armées et les sorties de bébés refusées.",
  "ward.endCodePinkConfirm": "Mettre fin au code rose ?",
  "ward.reason": "Motif",
  "ward.signOutBtn": "Sortie",
  "ward.pairBtn": "Associer",
  "ward.pairTitle": "Associer {name} à un bracelet mère",
  "ward.motherTag": "Bracelet mère",
  "ward.returnBtn": "Retour",
  "ward.dischargeBtn": "Congé",
  "ward.dischargeConfirm": "Donner congé à {name} ? Le bracelet est libéré.",
  "ward.signOutTitle": "Sortie de {name}",
  "ward.escort": "Accompagnant (badge soignant ou mère)",
  "ward.duration": "Durée (minutes)",
  "ward.done": "Fait.",
  "tech.gateways": "Passerelles",
  "tech.readers": "Lecteurs de porte",
  "tech.unknown": "Badges inconnus",
  "tech.errors": "Erreurs de décodage",
  "tech.ingest": "Débit reçu",
  "tech.tick": "Cycle p99",
  "tech.online": "en ligne",
  "tech.offline": "hors ligne",
  "tech.id": "Id",
  "tech.floor": "Étage",
  "tech.status": "État",
  "tech.lastHeard": "Dernier message",
  "tech.never": "jamais",
  "tech.mac": "MAC",
  "tech.serial": "N° de série",
  "tech.count": "Nombre",
  "tech.lastSeen": "Vu",
  "tech.reason": "Cause",
  "tech.none": "Aucun.",
  "tech.summary": "{on} sur {all} en ligne",
  "tech.noData": "En attente des données techniques…",
  "audit.title": "Journal d’audit (derniers enregistrements)",
  "audit.when": "Quand",
  "audit.who": "Qui",
  "audit.what": "Quoi",
  "audit.subject": "Objet",
  "audit.detail": "Détail",
  "audit.empty": "Aucun enregistrement.",
  "ago.s": "il y a {n} s",
  "ago.m": "il y a {n} min",
  "ago.h": "il y a {n} h",
  "dur.s": "{s} s",
  "dur.ms": "{m} min {s} s",
  "dur.hm": "{h} h {m} min",
  "unit.perSecond": "{n} /s",
  "unit.ms": "{n} ms",
  "err.noReply": "Pas de réponse du serveur.",
  "err.notConnected": "Pas de connexion au serveur.",
  "err.sessionExpired": "Votre session a expiré : reconnectez-vous.",
  "err.tooManyAttempts": "Trop d’échecs : réessayez.",
  "err.wrongPassword": "Nom d’utilisateur ou mot de passe incorrect.",
  "err.required": "Veuillez remplir ce champ.",
  "ok.acknowledged": "Alarme {id} acquittée.",
  "ok.resolved": "Alarme {id} close.",
};

const TABLES = { en: EN, fr: FR };
export const LANGS = ["fr", "en"];
const listeners = [];
let lang = "en";

/** The language to start with: the saved choice, else French for a French browser. */
export function initialLang() {
  let saved = null;
  try { saved = localStorage.getItem("rtls.lang"); } catch { /* storage disabled */ }
  if (saved && TABLES[saved]) return saved;
  const nav = (navigator.language || "en").toLowerCase();
  return nav.startsWith("fr") ? "fr" : "en";
}

export function getLang() { return lang; }

/** Switch language, remember it and notify the listeners (which re-render). */
export function setLang(next) {
  if (!TABLES[next]) return;
  lang = next;
  document.documentElement.lang = next;
  try { localStorage.setItem("rtls.lang", next); } catch { /* storage disabled */ }
  for (const fn of listeners) fn(next);
}

export function onLangChange(fn) { listeners.push(fn); }

/** The string for `key` in the current language, with {name} placeholders filled. */
export function t(key, params = {}) {
  const s = TABLES[lang][key] ?? EN[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

/** A catalogue name (alarm type, state, outcome, priority) or the raw name if unknown. */
export function tName(prefix, name) {
  const key = `${prefix}.${name}`;
  return key in EN ? t(key) : String(name ?? "");
}

/** Fill every [data-i18n] element's text and [data-i18n-*] attributes of `root`. */
export function translateDom(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
  document.title = t("app.title");
}

const SERVER_ERRORS = {
  "wrong user name or password": "err.wrongPassword",
  "session expired: log in again": "err.sessionExpired",
};

/** A server error message in the user's language when it is a known one, else as sent. */
export function tServerError(msg) {
  const key = SERVER_ERRORS[String(msg || "").trim().toLowerCase()];
  return key ? t(key) : String(msg || "");
}

/** The locale for dates and numbers: the browser's own when it is of the chosen language. */
function locale() {
  const nav = navigator.language || "";
  return nav.toLowerCase().startsWith(lang) ? nav : lang === "fr" ? "fr-FR" : "en-GB";
}

/** Local time of an epoch time in seconds (HH:MM:SS, with the date when not today). */
export function fmtTime(epochS) {
  if (epochS == null || !Number.isFinite(epochS)) return "—";
  const d = new Date(epochS * 1000);
  const now = new Date();
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (d.toDateString() !== now.toDateString()) {
    Object.assign(opts, { day: "2-digit", month: "2-digit" });
    return d.toLocaleString(locale(), opts);
  }
  return d.toLocaleTimeString(locale(), opts);
}

/** A duration in seconds as "42 s", "3 min 5 s" or "2 h 10 min". */
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("dur.s", { s });
  if (s < 3600) return t("dur.ms", { m: Math.floor(s / 60), s: s % 60 });
  return t("dur.hm", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

/** "12 s ago", "3 min ago", "2 h ago". */
export function fmtAgo(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return t("ago.s", { n: s });
  if (s < 7200) return t("ago.m", { n: Math.floor(s / 60) });
  return t("ago.h", { n: Math.floor(s / 3600) });
}

/** A number in the user's locale. */
export function fmtNumber(x, digits = 0) {
  if (x == null || !Number.isFinite(x)) return "—";
  return x.toLocaleString(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
