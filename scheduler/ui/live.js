// Polling that stops when the page is left: `every(ms, tick)` runs tick every ms (the page
// has drawn the first state itself), never two at once, and returns the function that stops it.

export function every(ms, tick) {
  let stopped = false;
  let timer = null;
  const loop = async () => {
    if (stopped) return;
    try {
      await tick();
    } catch (error) {
      console.warn(error);
    }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  timer = setTimeout(loop, ms);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/// Several stop functions as one.
export function all(...stops) {
  return () => stops.forEach((stop) => stop && stop());
}
