// AudioWorklet: microphone -> 16-bit PCM at the target rate, posted in 20 ms frames.
class MicCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.target = (options.processorOptions && options.processorOptions.targetRate) || 16000;
    this.ratio = sampleRate / this.target;   // e.g. 48000 / 16000 = 3
    this.frame = this.target / 50;           // samples per 20 ms
    this.buf = new Int16Array(this.frame);
    this.n = 0;
    this.pos = 0;                            // fractional read position across blocks
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    // Average the source samples that fall into each target sample (a cheap low-pass + decimate).
    while (this.pos < input.length) {
      const start = Math.floor(this.pos);
      const end = Math.min(input.length, Math.floor(this.pos + this.ratio));
      let sum = 0, count = 0;
      for (let i = start; i < end; i++) { sum += input[i]; count++; }
      const v = count ? sum / count : input[start];
      this.buf[this.n++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.n === this.frame) {
        this.port.postMessage(this.buf.buffer.slice(0));
        this.n = 0;
      }
      this.pos += this.ratio;
    }
    this.pos -= input.length;
    return true;
  }
}
registerProcessor('mic-capture', MicCapture);
