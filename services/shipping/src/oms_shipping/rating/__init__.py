"""Rate cards (zones, weight breaks, dimensional weight, surcharges, duties; CSV import and
export), the merchant's shipping rules, and rate shopping: every eligible quote for a
shipment with its cost broken down, its ship and delivery dates, and the choice by goal."""
