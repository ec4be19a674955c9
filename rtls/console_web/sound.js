// The alarm sound, generated with the Web Audio API (no audio file). Patterns after
// IEC 60601-1-8: high = a burst of 10 pulses (3 + 2, 3 + 2) every 6 s, medium = 3 pulses every
// 5 s, low = 2 soft pulses every 15 s. set(level) picks the pattern (null: silence).
// Browsers start an AudioContext only after a user gesture: unlock() must be called from one
// (the login click, or the "enable sound" button the page shows while blocked()).

const PATTERNS = {
  high: { freq: 880, type: "square", gain: 0.16, pulse: 0.15, period: 6,
          at: [0, 0.25, 0.5, 1.0, 1.25, 2.0, 2.25, 2.5, 3.0, 3.25] },
  medium: { freq: 523, type: "triangle", gain: 0.3, pulse: 0.2, period: 5, at: [0, 0.35, 0.7] },
  low: { freq: 440, type: "sine", gain: 0.2, pulse: 0.25, period: 15, at: [0, 0.4] },
};
const LOOKAHEAD_S = 0.5;

export class AlarmSound {
  constructor(onChange = () => {}) {
    this.ctx = null;
    this.level = null;
    this.nextStart = 0;
    this.timer = null;
    this.voices = new Set();       // scheduled oscillators, stopped at once on a change
    this.onChange = onChange;
  }

  /** Create or resume the audio context; call from a user gesture. */
  unlock() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx) {
      this.ctx = new Ctx();
      this.ctx.onstatechange = () => { this.restart(); this.onChange(); };
    }
    if (this.ctx.state !== "running") this.ctx.resume().catch(() => {});
  }

  /** Sound `level` ("high", "medium", "low") in a loop, or stop with null. */
  set(level) {
    const next = level && PATTERNS[level] ? level : null;
    if (next === this.level) return;
    this.level = next;
    // Without a gesture on the page yet, the browser would refuse (and warn): wait for unlock().
    const active = !navigator.userActivation || navigator.userActivation.hasBeenActive;
    if (next && !this.ctx && active) this.unlock();
    this.restart();
    this.onChange();
  }

  /** True while a pattern is actually sounding (an alarm wants sound and audio runs). */
  playing() {
    return this.level !== null && this.ctx !== null && this.ctx.state === "running";
  }

  /** True when an alarm wants sound but the browser keeps audio suspended. */
  blocked() {
    return this.level !== null && !this.playing();
  }

  restart() {
    clearInterval(this.timer);
    this.timer = null;
    for (const osc of this.voices) { try { osc.stop(); } catch { /* not started */ } }
    this.voices.clear();
    if (!this.playing()) return;
    this.nextStart = this.ctx.currentTime + 0.05;
    this.schedule();
    this.timer = setInterval(() => this.schedule(), 200);
  }

  schedule() {
    if (!this.playing()) return;
    const p = PATTERNS[this.level];
    while (this.nextStart < this.ctx.currentTime + LOOKAHEAD_S) {
      for (const offset of p.at) this.beep(this.nextStart + offset, p);
      this.nextStart += p.period;
    }
  }

  beep(start, p) {
    const osc = this.ctx.createOscillator();
    const gain = this.ctx.createGain();
    osc.type = p.type;
    osc.frequency.value = p.freq;
    gain.gain.setValueAtTime(0, start);
    gain.gain.linearRampToValueAtTime(p.gain, start + 0.015);
    gain.gain.setValueAtTime(p.gain, start + p.pulse - 0.03);
    gain.gain.linearRampToValueAtTime(0, start + p.pulse);
    osc.connect(gain).connect(this.ctx.destination);
    osc.start(start);
    osc.stop(start + p.pulse + 0.01);
    this.voices.add(osc);
    osc.onended = () => this.voices.delete(osc);
  }
}
