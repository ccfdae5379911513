package demoapp

import "testing"

func TestAdvertised(t *testing.T) {
	tests := []struct {
		name, app, bind string
		env             map[string]string
		want            string
	}{
		{"specific address kept", "customers", "127.0.0.1", map[string]string{"AUTOPILOT_CUSTOMERS_IP": "10.0.0.9"}, "127.0.0.1"},
		{"0.0.0.0 takes autopilot's", "customers", "0.0.0.0", map[string]string{"AUTOPILOT_CUSTOMERS_IP": "10.89.77.3"}, "10.89.77.3"},
		{"empty bind takes autopilot's", "customers", "", map[string]string{"AUTOPILOT_CUSTOMERS_IP": "10.89.77.3"}, "10.89.77.3"},
		{":: takes ContainerPilot's", "sales", "::", map[string]string{"CONTAINERPILOT_SALES_IP": "fd00::5"}, "fd00::5"},
		{"autopilot's before ContainerPilot's", "sales", "0.0.0.0",
			map[string]string{"AUTOPILOT_SALES_IP": "10.0.0.1", "CONTAINERPILOT_SALES_IP": "10.0.0.2"}, "10.0.0.1"},
		{"name upper-cased, other runes _", "my-app.v2", "0.0.0.0", map[string]string{"AUTOPILOT_MY_APP_V2_IP": "10.0.0.7"}, "10.0.0.7"},
		{"hostname kept", "customers", "localhost", nil, "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AUTOPILOT_CUSTOMERS_IP", "AUTOPILOT_SALES_IP", "CONTAINERPILOT_SALES_IP", "AUTOPILOT_MY_APP_V2_IP"} {
				t.Setenv(k, "")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := advertised(tc.app, tc.bind); got != tc.want {
				t.Errorf("advertised(%q, %q) = %q, want %q", tc.app, tc.bind, got, tc.want)
			}
		})
	}
}
