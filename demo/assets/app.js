// Demo script served by the local origin through Tiercel: shows how this page itself was served.
(async function showCacheStatus() {
  const response = await fetch(location.href, { method: "HEAD", cache: "no-store" });
  const status = document.getElementById("status");
  if (status) {
    status.textContent = `Cache-Status of this page: ${response.headers.get("cache-status") ?? "(none)"}`;
  }
})();
