/* riskcast: when the server answers 401 (the session ended: signed out elsewhere, expired,
   or the user was disabled), go to the sign-in page instead of leaving a stale screen. */
(function () {
  "use strict";
  var originalFetch = window.fetch;
  window.fetch = function () {
    return originalFetch.apply(this, arguments).then(function (response) {
      if (response.status === 401 && window.location.pathname !== "/login") {
        window.location.assign("/login");
      }
      return response;
    });
  };
})();
