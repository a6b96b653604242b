/* The campaign form's conveniences; the form works without them.
   - Choosing a recurring preset fills the five crontab fields with it; typing in one of those
     fields switches the preset to "Custom".
   - Choosing a template shows the variables it uses as the variables field's placeholder. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var cronIds = ["minute", "hour", "day_of_month", "month_of_year", "day_of_week"].map(
    function (name) { return "id_cron_" + name; }
  );
  var preset = document.getElementById("id_schedule_preset");
  var cron = cronIds.map(function (id) { return document.getElementById(id); });
  if (preset && cron.every(Boolean)) {
    preset.addEventListener("change", function () {
      if (preset.value === "" || preset.value === "custom") { return; }
      preset.value.split(" ").forEach(function (part, i) { cron[i].value = part; });
    });
    cron.forEach(function (input) {
      input.addEventListener("input", function () { preset.value = "custom"; });
    });
  }
  var template = document.getElementById("id_template");
  var variables = document.getElementById("id_variables");
  if (template && variables) {
    var showVariables = function () {
      var option = template.options[template.selectedIndex];
      var names = option && option.dataset.variables ? option.dataset.variables.split(",") : [];
      variables.placeholder = names.map(function (name) { return name + "="; }).join("\n");
    };
    template.addEventListener("change", showVariables);
    if (!variables.placeholder) { showVariables(); }
  }
});
