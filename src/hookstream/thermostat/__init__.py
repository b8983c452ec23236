"""The thermostat cloud: plants, chronothermostat modules, their state and notifications."""
