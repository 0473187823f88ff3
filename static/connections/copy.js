// Copy buttons: <button data-copy="input-id">. Loaded as a file (CSP: no inline scripts).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  input.select();
  navigator.clipboard?.writeText(input.value).then(
    () => { button.textContent = "Copied"; },
    () => { button.textContent = "Select and copy"; },
  );
});
