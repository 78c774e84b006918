// The result list: one dense row per hit, one player for the whole list, keyboard audition.
//
// Python sends rows (ui/hitlist.py); clicks on actions go back as one "action" trigger
// ({kind, id, value}); playing, seeking and opening details happen here, without a rerun.
// Text from files (names, folders, tags) is only ever set as textContent.

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined && text !== null) made.textContent = text;
  return made;
}

function button(className, label, title, name) {
  const made = element("button", className, label);
  made.type = "button";
  made.title = title;
  if (name) made.setAttribute("aria-label", name); // where the label is a symbol
  return made;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = parentElement;
  // One player per list, kept across reruns, so only one sound ever plays.
  if (!root.__clapdex) {
    const audio = element("audio");
    audio.preload = "auto";
    audio.onloadedmetadata = () => root.__clapdex.pending && root.__clapdex.pending();
    root.__clapdex = { audio, key: null, selected: 0, pending: null };
  }
  const memory = root.__clapdex;
  const audio = memory.audio;
  const rows = data.rows || [];
  const sameSearch = memory.key === data.key;
  if (!sameSearch) {
    audio.pause();
    memory.selected = 0;
  }

  let list = root.querySelector(".hitlist");
  if (list) list.remove();
  list = element("div", "hitlist");
  list.tabIndex = 0;
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Results: arrow keys or j/k move and play, space plays or stops, m finds more like it");
  root.appendChild(list);

  const head = element("div", "head");
  head.appendChild(element("div", "what", data.what));
  if (data.details) head.appendChild(element("div", "details", data.details));
  head.appendChild(element("div", "count", data.count));
  list.appendChild(head);
  if (data.notice) list.appendChild(element("div", "notice", data.notice));

  const drawn = [];
  rows.forEach((row, index) => {
    if (row.group && (index === 0 || rows[index - 1].group !== row.group)) list.appendChild(element("div", "group", row.group));
    drawn.push(drawRow(row, index));
  });

  if (data.pages > 1) {
    const pager = element("div", "pager");
    const back = button("page", "‹ Previous", "Previous page", "Previous");
    back.disabled = data.page === 0;
    back.onclick = () => act("page", data.page - 1);
    const forward = button("page", "Next ›", "Next page", "Next");
    forward.disabled = data.page + 1 >= data.pages;
    forward.onclick = () => act("page", data.page + 1);
    pager.append(back, element("span", "where", `page ${data.page + 1} of ${data.pages}`), forward);
    list.appendChild(pager);
  }

  function act(kind, id, value) {
    audio.pause();
    setTriggerValue("action", { kind, id, value, at: Date.now() });
  }

  function drawRow(row, index) {
    const line = element("div", "row");
    line.setAttribute("role", "option");
    line.dataset.rank = row.rank;
    line.dataset.name = row.name;

    const play = button("play", "▶", "Play or stop (space)", `Play ${row.name}`);
    play.onclick = (event) => { event.stopPropagation(); select(index); toggle(index); };

    const wave = element("div", "wave");
    const picture = element("img");
    picture.src = row.wave;
    picture.alt = `waveform of ${row.name}`;
    const playhead = element("div", "playhead");
    wave.append(picture, playhead);
    wave.title = "Click to play from here";
    wave.onclick = (event) => {
      const box = wave.getBoundingClientRect();
      select(index);
      start(index, ((event.clientX - box.left) / box.width) * row.duration);
    };

    const title = element("div", "title");
    title.appendChild(element("div", "name", row.name));
    title.appendChild(element("div", "folder", row.folder));
    if (row.suggestions && row.suggestions.length) {
      const chips = element("div", "suggestions");
      for (const suggestion of row.suggestions) {
        const chip = button(`suggestion${suggestion.accepted ? " accepted" : ""}`, suggestion.label, suggestion.title,
                            `${suggestion.accepted ? "Accepted" : "Suggested"} category ${suggestion.label}`);
        chip.disabled = suggestion.accepted;
        chip.onclick = (event) => { event.stopPropagation(); act("accept", row.id, suggestion.catId); };
        chips.appendChild(chip);
      }
      title.appendChild(chips);
    }

    const match = element("div", `match ${row.match || "none"}`);
    if (row.match) {
      match.appendChild(element("span", "level", row.match));
      match.title = row.matchTitle;
    }
    if (row.score) match.appendChild(element("span", "score", row.score));
    if (row.keyword) match.appendChild(element("span", "keyword", "keywords"));

    const actions = element("div", "actions");
    for (const [kind, label, help] of data.actions) {
      const act_button = button(`act act-${kind}`, label, help);
      act_button.onclick = (event) => {
        event.stopPropagation();
        // The clipboard is there on https and on localhost; elsewhere the page shows the list to copy.
        if (kind === "keep" && row.copy && navigator.clipboard) navigator.clipboard.writeText(row.copy).catch(() => {});
        act(kind, row.id);
      };
      actions.appendChild(act_button);
    }
    const download = element("a", "act download", "↓ WAV");
    download.href = row.download;
    download.title = "Download the matched region as WAV";
    const more = button("act info", "Info", "Spectrogram and details");
    actions.append(download, more);

    const details = element("div", "more-info");
    details.hidden = true;
    more.onclick = (event) => {
      event.stopPropagation();
      details.hidden = !details.hidden;
      if (!details.hidden && !details.childElementCount) {
        details.appendChild(element("div", "meta", row.meta));
        if (row.description) details.appendChild(element("div", "meta", row.description));
        details.appendChild(element("div", "meta", row.path));
        const spectrum = element("img", "spectrogram");
        spectrum.src = row.spectrogram;
        spectrum.alt = `spectrogram of ${row.name}`;
        details.appendChild(spectrum);
      }
    };

    const length = element("div", "length");
    length.append(element("div", "duration", row.durationLabel), element("div", "region", row.regionLabel));
    line.append(play, element("div", "rank", `${row.rank}`), wave, title, length, match, actions);
    line.onclick = () => { select(index); list.focus({ preventScroll: true }); };
    const block = element("div", "entry");
    block.append(line, details);
    list.appendChild(block);
    return { line, play, playhead, row };
  }

  function select(index, reveal = false) {
    if (!drawn.length) return;
    memory.selected = Math.max(0, Math.min(index, drawn.length - 1));
    drawn.forEach((item, at) => item.line.classList.toggle("selected", at === memory.selected));
    if (reveal) drawn[memory.selected].line.scrollIntoView({ block: "nearest" });
  }

  function start(index, from) {
    const { row } = drawn[index];
    audio.dataset.index = index;
    memory.pending = () => {
      memory.pending = null;
      audio.currentTime = Math.max(0, Math.min(from, row.duration));
      audio.play().catch(() => {});
    };
    if (audio.dataset.src !== row.audio) {
      audio.dataset.src = row.audio;
      audio.src = row.audio; // loads it; the pending start runs once its length is known
    } else if (audio.readyState >= 1) memory.pending();
  }

  function toggle(index) {
    const playing = !audio.paused && Number(audio.dataset.index) === index;
    if (playing) audio.pause(); else start(index, drawn[index].row.start);
  }

  function refresh() {
    const current = Number(audio.dataset.index);
    drawn.forEach((item, at) => {
      const playing = at === current && !audio.paused;
      item.line.classList.toggle("playing", playing);
      item.play.textContent = playing ? "❚❚" : "▶";
      const shown = at === current && item.row.duration > 0 && audio.currentTime > 0;
      item.playhead.style.display = shown ? "block" : "none";
      if (shown) item.playhead.style.left = `${Math.min(100, (100 * audio.currentTime) / item.row.duration)}%`;
    });
  }

  const events = ["play", "pause", "ended", "timeupdate"];
  events.forEach((name) => audio.addEventListener(name, refresh));

  list.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || !drawn.length) return;
    const key = event.key;
    if (key === "ArrowDown" || key === "j") { select(memory.selected + 1, true); start(memory.selected, drawn[memory.selected].row.start); }
    else if (key === "ArrowUp" || key === "k") { select(memory.selected - 1, true); start(memory.selected, drawn[memory.selected].row.start); }
    else if (key === " ") toggle(memory.selected);
    else if (key === "Enter") start(memory.selected, drawn[memory.selected].row.start);
    else if (key === "m") act("more", drawn[memory.selected].row.id);
    else return;
    event.preventDefault();
  });

  if (drawn.length) select(sameSearch ? memory.selected : 0);
  refresh();
  if (!sameSearch) {
    // A new search, page, filter or sort: show the top of its results and what was searched.
    const top = head.getBoundingClientRect().top;
    if (memory.key !== null && (top < 0 || top > window.innerHeight * 0.6)) head.scrollIntoView({ block: "start" });
    memory.key = data.key;
  }

  return () => events.forEach((name) => audio.removeEventListener(name, refresh));
}
